import Dispatch
import FERKernelsAVX512
#if canImport(Glibc)
import Glibc
#endif

/// The tiles the packed products (``PackedGEMM``, ``DenseConvolution``) run on, chosen once per
/// process: AVX-512 where this build has it and the CPU runs it, the 8-float SIMD tiles otherwise.
public enum MicroKernel: String, Sendable, CaseIterable {
    /// 6x16 tiles of 8-float vectors (AVX2 and FMA in this package's x86-64 release builds, the
    /// target's SIMD elsewhere).
    case simd8
    /// 12x32 tiles of 16-float vectors (module FERKernelsAVX512).
    case avx512

    /// The kernels this process can run: ``simd8`` always, ``avx512`` where the build holds it and
    /// the CPU reports AVX-512 F, CD, BW, DQ and VL (the Skylake-AVX512 set it is compiled for).
    public static let available: [MicroKernel] =
        AVX512Tiles.compiled && CPUFeatures.current.isSuperset(of: CPUFeatures.avx512Set) ? [.simd8, .avx512] : [.simd8]

    /// The kernel products use unless told otherwise: the last of ``available``, or the one named
    /// by the environment variable `FER_KERNELS` (`simd8`, `avx512`) when it is available (for
    /// benchmarks and tests).
    public static let preferred: MicroKernel = {
        if let name = getenv("FER_KERNELS").map({ String(cString: $0) }), let chosen = MicroKernel(rawValue: name),
           available.contains(chosen) {
            return chosen
        }
        return available.last!
    }()

    /// The kernel for a product of inner dimension `inner`: ``preferred``, except that inner
    /// dimensions under 16 stay on ``simd8`` (RetinaFace's 8-channel 1x1, 102400 x 8 x 16, took
    /// 1.7x the 8-float tiles' time on AVX-512: its tiles are all epilogue; tools/gemm-shapes).
    public static func forProduct(inner: Int) -> MicroKernel {
        inner < 16 ? .simd8 : preferred
    }
}

extension MicroKernel {
    /// Fused multiply-add peak of one thread at this kernel's vector width, in GFLOP/s: a
    /// register-only loop of 12 independent multiply-add chains (no memory traffic; the
    /// `multiplyAddProbe` functions), best of five runs of about a millisecond. A pass's achieved
    /// GFLOP/s over this is the fraction of the machine's arithmetic limit it reaches.
    public func measuredPeak() -> Double {
        let rounds = 200_000
        var best = Double.infinity
        var sink: Float = 0
        for run in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            switch self {
            case .simd8: sink += MicroKernel.multiplyAddProbe8(rounds: rounds, seed: Float(run))
            case .avx512: sink += AVX512Tiles.multiplyAddProbe(rounds: rounds, seed: Float(run))
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        let lanes = self == .avx512 ? 16 : 8
        return sink.isNaN ? 0 : Double(2 * lanes * 12 * rounds) / best
    }

    /// ``AVX512Tiles/multiplyAddProbe(rounds:seed:)`` with 8-float vectors (this module's target).
    @inline(never)
    static func multiplyAddProbe8(rounds: Int, seed: Float) -> Float {
        let x = SIMD8<Float>(repeating: 0.999), y = SIMD8<Float>(repeating: seed * 1e-3)
        var a0 = SIMD8<Float>(repeating: seed + 0)
        var a1 = SIMD8<Float>(repeating: seed + 1)
        var a2 = SIMD8<Float>(repeating: seed + 2)
        var a3 = SIMD8<Float>(repeating: seed + 3)
        var a4 = SIMD8<Float>(repeating: seed + 4)
        var a5 = SIMD8<Float>(repeating: seed + 5)
        var a6 = SIMD8<Float>(repeating: seed + 6)
        var a7 = SIMD8<Float>(repeating: seed + 7)
        var a8 = SIMD8<Float>(repeating: seed + 8)
        var a9 = SIMD8<Float>(repeating: seed + 9)
        var a10 = SIMD8<Float>(repeating: seed + 10)
        var a11 = SIMD8<Float>(repeating: seed + 11)
        for _ in 0..<rounds {
            a0 = a0.addingProduct(x, y)
            a1 = a1.addingProduct(x, y)
            a2 = a2.addingProduct(x, y)
            a3 = a3.addingProduct(x, y)
            a4 = a4.addingProduct(x, y)
            a5 = a5.addingProduct(x, y)
            a6 = a6.addingProduct(x, y)
            a7 = a7.addingProduct(x, y)
            a8 = a8.addingProduct(x, y)
            a9 = a9.addingProduct(x, y)
            a10 = a10.addingProduct(x, y)
            a11 = a11.addingProduct(x, y)
        }
        return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).sum()
    }
}

/// CPU features as Linux reports them (the `flags` line of `/proc/cpuinfo`; the kernel lists only
/// the features the OS has enabled, AVX-512 register state included). Empty elsewhere.
enum CPUFeatures {
    static let avx512Set: Set<String> = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]

    static let current: Set<String> = {
        #if os(Linux) && arch(x86_64)
        guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            guard text.hasPrefix("flags") else { continue }
            let value = text.split(separator: ":", maxSplits: 1).dropFirst().first ?? ""
            return Set(value.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
        }
        return []
        #else
        return []
        #endif
    }()
}
