import Foundation

/// The activation applied after a bias add.
public enum Activation {
    case identity
    case relu
    /// Parametric ReLU with one slope per column (channel): `x >= 0 ? x : slope[c] * x`.
    case prelu(UnsafePointer<Float>)
    /// `x * min(max(x + 3, 0), 6) / 6`.
    case hardSwish
    /// `1 / (1 + exp(-x))`.
    case sigmoid
}

/// Elementwise passes over row-major `(rows, cols)` matrices with row stride `ld`; in NHWC
/// activations a row is one pixel and a column one channel.
public enum Elementwise {
    /// `x[r, c] = activation(x[r, c] + bias[c])`, in place. `bias` may be nil.
    public static func biasActivation(
        _ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int,
        bias: UnsafePointer<Float>?, activation: Activation
    ) {
        let vectorEnd = cols & ~7
        for r in 0..<rows {
            let row = x + r * ld
            switch activation {
            case .identity, .relu, .prelu:
                var c = 0
                while c < vectorEnd {
                    var v = loadVector(row + c)
                    if let bias { v += loadVector(bias + c) }
                    switch activation {
                    case .relu: v.replace(with: 0, where: v .< 0)
                    case .prelu(let slope): v.replace(with: v * loadVector(slope + c), where: v .< 0)
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
                    default: break
                    }
                    row[c] = v
                    c += 1
                }
            case .hardSwish:
                for c in 0..<cols {
                    let v = row[c] + (bias?[c] ?? 0)
                    row[c] = v * min(max(v + 3, 0), 6) / 6
                }
            case .sigmoid:
                for c in 0..<cols {
                    let v = row[c] + (bias?[c] ?? 0)
                    row[c] = 1 / (1 + expf(-v))
                }
            }
        }
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
        for r in 0..<rows {
            let row = x + r * cols
            var top = -Float.infinity
            for c in 0..<cols { top = max(top, row[c]) }
            var sum = 0.0
            for c in 0..<cols { sum += exp(Double(row[c] - top)) }
            for c in 0..<cols { row[c] = Float(exp(Double(row[c] - top)) / sum) }
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
