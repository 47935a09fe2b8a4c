import FERKernels
import Foundation

/// A copy of a convolution's weights in a kernel's layout.
protocol PackedCopy: AnyObject {
    /// Bytes held.
    var byteCount: Int { get }
}

extension PackedWeights: PackedCopy {}
extension WinogradWeights: PackedCopy {}

/// The packed copies of a model's convolution weights (``PackedWeights``, ``WinogradWeights``),
/// made once, the first time a plan asks for them, and shared by every plan of the model (one per
/// input size).
final class WeightPacking: @unchecked Sendable {
    // @unchecked: `packed` is only touched under `lock`.
    private let lock = NSLock()
    private var packed: [String: any PackedCopy] = [:]

    /// The weights packed under `key` (the names of the weight, bias and slopes, and the layout),
    /// packing them with `make` the first time. One key always holds one type of copy.
    func packed<Copy: PackedCopy>(_ key: String, _ make: () -> Copy) -> Copy {
        lock.lock()
        defer { lock.unlock() }
        if let p = packed[key] { return p as! Copy }
        let p = make()
        packed[key] = p
        return p
    }

    /// Bytes the packed weights hold.
    var byteCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return packed.values.reduce(0) { $0 + $1.byteCount }
    }
}

extension ExecutionPlan.GEMMChoice {
    /// Whether ``PackedGEMM`` beats OpenBLAS for a 1x1 convolution's product of `rows` (pixels
    /// of one image) x `inner` x `columns`, one thread (dense KxK convolutions always run
    /// ``DenseConvolution``). From per-shape timings of both (docs/BENCHMARKS.md, "Speed round 2",
    /// `tools/gemm-shapes/run.sh`).
    ///
    /// The packed kernel takes 0.70x to 0.90x OpenBLAS's time (with its bias/activation pass) on
    /// every LFNSB and RetinaFace shape of 16 or more output channels: its epilogue saves a pass
    /// over the output and it packs nothing per call. With 8 or fewer output channels over many
    /// rows (RetinaFace's 8-channel im2col stem measured 1.00x to 1.4x on the 8-float tiles; its
    /// 1x1 heads have 4 to 8 outputs) most of each 16-column panel is padding, so OpenBLAS keeps
    /// those, except where the AVX-512 tiles run: there the heads (6400 x 64 x 4 and x 8) took
    /// 0.41x and 0.47x OpenBLAS's time, and no shape was faster on OpenBLAS.
    static func packedWins(rows: Int, inner: Int, columns: Int) -> Bool {
        columns > 8 || rows * inner * columns <= GEMM.smallProductLimit || MicroKernel.preferred == .avx512
    }
}
