import FERKernelsAVX512
import Foundation

/// The activation applied after a bias add.
public enum Activation {
    case identity
    case relu
    /// Parametric ReLU with one slope per column (channel): `x >= 0 ? x : slope[c] * x`.
    case prelu(UnsafePointer<Float>)
    /// Leaky ReLU with one slope for every channel: `x >= 0 ? x : slope * x`.
    case leakyRelu(Float)
    /// `x * min(max(x + 3, 0), 6) / 6`.
    case hardSwish
    /// `1 / (1 + exp(-x))`.
    case sigmoid

    /// The same activation for columns `first...` of the columns it was made for (PReLU's
    /// slopes move with the columns; the rest are the same everywhere).
    public func channels(from first: Int) -> Activation {
        if case .prelu(let slope) = self { return .prelu(slope + first) }
        return self
    }
}

/// Elementwise passes over row-major `(rows, cols)` matrices with row stride `ld`; in NHWC
/// activations a row is one pixel and a column one channel.
public enum Elementwise {
    /// `x[r, c] = activation(x[r, c] + bias[c])`, in place. `bias` may be nil.
    public static func biasActivation(
        _ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int,
        bias: UnsafePointer<Float>?, activation: Activation
    ) {
        // Contiguous rows, no bias, and an activation whose vector and scalar code give the same
        // values bit for bit (leaky ReLU): one run (rows of a few channels, RetinaFace's 8, would
        // otherwise go 8 floats at a time). Not the others: the last columns of a row take the
        // scalar code (h_swish, sigmoid, and ReLU's sign of zero differ there), and a run over the
        // rows would move that split with the row count, and a batch's floats with it.
        var sameEverywhere = false
        if case .leakyRelu = activation { sameEverywhere = true }
        if ld == cols && rows > 1 && bias == nil && sameEverywhere {
            return biasActivation(x, rows: 1, cols: rows * cols, ld: rows * cols, bias: nil, activation: activation)
        }
        let vectorEnd = cols & ~7
        for r in 0..<rows {
            let row = x + r * ld
            switch activation {
            case .identity, .relu, .prelu, .leakyRelu:
                var c = 0
                while c < vectorEnd {
                    var v = loadVector(row + c)
                    if let bias { v += loadVector(bias + c) }
                    // Masked blends: Swift's pointwiseMin/Max keep NaN rules and do not vectorise.
                    switch activation {
                    case .relu: v.replace(with: 0, where: v .< 0)
                    case .prelu(let slope): v.replace(with: v * loadVector(slope + c), where: v .< 0)
                    case .leakyRelu(let slope): v.replace(with: v * slope, where: v .< 0)
                    default: break
                    }
                    storeVector(v, row + c)
                    c += 8
                }
                while c < cols {
                    var v = row[c] + (bias?[c] ?? 0)
                    switch activation {
                    case .relu: v = max(v, 0)
                    case .prelu(let slope): if v < 0 { v *= slope[c] }
                    case .leakyRelu(let slope): if v < 0 { v *= slope }
                    default: break
                    }
                    row[c] = v
                    c += 1
                }
            case .hardSwish:
                // PyTorch's h_swish: x * (relu6(x + 3) / 6), in that order (the same floats).
                var c = 0
                while c < vectorEnd {
                    var v = loadVector(row + c)
                    if let bias { v += loadVector(bias + c) }
                    var t = v + 3
                    t.replace(with: 0, where: t .< 0)
                    t.replace(with: 6, where: t .> 6)
                    storeVector(v * (t / 6), row + c)
                    c += 8
                }
                while c < cols {
                    let v = row[c] + (bias?[c] ?? 0)
                    var t = v + 3
                    if t < 0 { t = 0 }
                    if t > 6 { t = 6 }
                    row[c] = v * (t / 6)
                    c += 1
                }
            case .sigmoid:
                var c = 0
                if bias == nil && MicroKernel.preferred == .avx512 {
                    c = vectorEnd & ~15  // the same floats 16 at a time
                    AVX512Elementwise.sigmoid(row, count: c)
                }
                let one = SIMD8<Float>(repeating: 1)
                while c < vectorEnd {
                    var v = loadVector(row + c)
                    if let bias { v += loadVector(bias + c) }
                    storeVector(one / (one + exponential(-v)), row + c)
                    c += 8
                }
                while c < cols {
                    let v = row[c] + (bias?[c] ?? 0)
                    row[c] = 1 / (1 + expf(-v))
                    c += 1
                }
            }
        }
    }

    /// `e^x` for 8 floats: range reduction by ln 2, a degree-5 polynomial on [-ln2/2, ln2/2] and
    /// the power of two built in the exponent bits (within 2 ulp of `expf`; see the tests).
    @inline(__always)
    public static func exponential(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var x = x
        x.replace(with: -87.3, where: x .< -87.3)
        x.replace(with: 88.3, where: x .> 88.3)
        // n = round(x / ln 2): adding 1.5 * 2^23 leaves the rounded integer in the low mantissa
        // bits, so no float-to-int conversion is needed.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = x * 1.44269504088896341 + magic
        let n = shifted - magic
        // r = x - n ln 2, with ln 2 split in two so the product is exact.
        var r = x - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let e = p * r * r + r + 1
        let exponentBits = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return e * unsafeBitCast(exponentBits, to: SIMD8<Float>.self)
    }

    /// `y[i] += x[i]` for `count` values.
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        let vectorEnd = count & ~7
        var i = 0
        while i < vectorEnd {
            storeVector(loadVector(y + i) + loadVector(x + i), y + i)
            i += 8
        }
        while i < count { y[i] += x[i]; i += 1 }
    }

    /// `y[i] = max(y[i], x[i])` for `count` values.
    public static func maximum(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = max(y[i], x[i]) }
    }

    /// `y[i] *= x[i]` for `count` values.
    public static func multiply(_ y: UnsafeMutablePointer<Float>, by x: UnsafePointer<Float>, count: Int) {
        let vectorEnd = count & ~7
        var i = 0
        while i < vectorEnd {
            storeVector(loadVector(y + i) * loadVector(x + i), y + i)
            i += 8
        }
        while i < count { y[i] *= x[i]; i += 1 }
    }

    /// Softmax of each row of `(rows, cols)` values, in place (max-subtracted, accumulated in Double).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        // Each exponential computed once (RetinaFace: two per anchor, 11760 anchors at 640x443).
        withUnsafeTemporaryAllocation(of: Double.self, capacity: cols) { e in
            let e = e.baseAddress!
            for r in 0..<rows {
                let row = x + r * cols
                var top = -Float.infinity
                for c in 0..<cols { top = max(top, row[c]) }
                var sum = 0.0
                for c in 0..<cols {
                    e[c] = exp(Double(row[c] - top))
                    sum += e[c]
                }
                for c in 0..<cols { row[c] = Float(e[c] / sum) }
            }
        }
    }

    /// Divides each row of `(rows, cols)` values by its 2-norm, in place (rows of zeros stay zero).
    public static func l2Normalize(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let row = x + r * cols
            var sum = 0.0
            for c in 0..<cols { sum += Double(row[c]) * Double(row[c]) }
            // PyTorch's F.normalize divides by max(norm, 1e-12).
            let scale = Float(1 / max(sum.squareRoot(), 1e-12))
            for c in 0..<cols { row[c] *= scale }
        }
    }
}
