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
