// Times OpenBLAS (`GEMM.multiply` + `Elementwise.biasActivation`, what the plan ran before) against
// `PackedGEMM.multiply` (bias and PReLU in its epilogue) on one thread, for the 1x1 and im2col
// convolution shapes of LFNSB (112x112) and RetinaFace (640x640): rows (pixels of one image) x
// inner (input channels x taps) x columns (output channels). Built by ./run.sh.
import COpenBLAS
import Dispatch
import Foundation
import FERKernels

let shapes: [(rows: Int, inner: Int, columns: Int, model: String)] = [
    (3136, 27, 64, "LFNSB stem"), (3136, 64, 96, "LFNSB"), (784, 64, 96, "LFNSB"), (784, 96, 64, "LFNSB"),
    (784, 64, 192, "LFNSB"), (196, 128, 192, "LFNSB"), (196, 192, 128, "LFNSB"), (196, 128, 768, "LFNSB"),
    (49, 256, 342, "LFNSB"), (49, 342, 256, "LFNSB"), (49, 768, 256, "LFNSB"), (49, 256, 66, "LFNSB"),
    (102_400, 27, 8, "RetinaFace stem"), (102_400, 8, 16, "RetinaFace"), (25_600, 16, 32, "RetinaFace"),
    (25_600, 32, 32, "RetinaFace"), (6_400, 32, 64, "RetinaFace"), (6_400, 64, 64, "RetinaFace"),
    (1_600, 64, 128, "RetinaFace"), (1_600, 128, 128, "RetinaFace"), (400, 128, 256, "RetinaFace"),
    (400, 256, 256, "RetinaFace"), (6_400, 64, 64, "RetinaFace FPN"), (1_600, 128, 64, "RetinaFace FPN"),
    (400, 256, 64, "RetinaFace FPN"),
    (6_400, 64, 4, "RetinaFace class head"), (6_400, 64, 8, "RetinaFace box head"), (6_400, 64, 20, "RetinaFace landmark head"),
    (400, 64, 4, "RetinaFace class head"), (400, 64, 8, "RetinaFace box head"),
]

openblas_set_num_threads(1)
var seed: UInt64 = 1
func nextValue() -> Float {
    seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(seed >> 40) / Float(1 << 24) - 0.5
}

func best(_ runs: Int, _ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<runs {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0))
    }
    return best
}

let kernels = MicroKernel.available
print("rows\tinner\tcols\tmodel\tblas_us" + kernels.map { "\t\($0)_us\t\($0)/blas\t\($0)_GFLOPs" }.joined())
for s in shapes {
    let a = (0..<s.rows * s.inner).map { _ in nextValue() }
    let b = (0..<s.inner * s.columns).map { _ in nextValue() }
    let bias = (0..<s.columns).map { _ in nextValue() }
    let slopes = (0..<s.columns).map { _ in 0.25 + nextValue() * 0.1 }
    var c = [Float](repeating: 0, count: s.rows * s.columns)
    let packed = PackedWeights(b: b, k: s.inner, n: s.columns, ldb: s.columns, bias: bias, slopes: slopes)
    let runs = max(5, min(200, 200_000_000 / (s.rows * s.inner * s.columns)))
    var blas = 0.0, ours = [Double](repeating: 0, count: kernels.count)
    // Interleaved rounds, best of each.
    for _ in 0..<3 {
        blas = best(runs) {
            slopes.withUnsafeBufferPointer { sl in
                GEMM.multiply(m: s.rows, n: s.columns, k: s.inner, a: a, lda: s.inner, b: b, ldb: s.columns, c: &c, ldc: s.columns)
                Elementwise.biasActivation(&c, rows: s.rows, cols: s.columns, ld: s.columns, bias: bias, activation: .prelu(sl.baseAddress!))
            }
        }
        for (i, kernel) in kernels.enumerated() {
            ours[i] = best(runs) {
                PackedGEMM.multiply(m: s.rows, a: a, lda: s.inner, b: packed, c: &c, ldc: s.columns, accumulate: false, epilogue: .prelu,
                                    kernel: kernel)
            }
        }
    }
    let flops = 2.0 * Double(s.rows * s.inner * s.columns)
    print("\(s.rows)\t\(s.inner)\t\(s.columns)\t\(s.model)\t\(Int(blas / 1000))"
          + ours.map { "\t\(Int($0 / 1000))\t" + String(format: "%.2f", $0 / blas) + "\t" + String(format: "%.1f", flops / $0) }.joined())
}
