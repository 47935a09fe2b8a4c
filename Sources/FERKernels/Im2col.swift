/// Lowering of a dense (not depthwise) 2-D convolution to a matrix product.
///
/// `columns[(n, oy, ox), (ky, kx, ci)]` holds input pixel `(oy*stride - pad + ky, ox*stride - pad + kx)`
/// channel `ci` (zero outside the image), so that `columns · W` with `W[(ky, kx, ci), co]` is the
/// convolution. Input is NHWC `(batch, height, width, channels)`.
public enum Im2col {
    /// Output size of a `kernel x kernel` convolution with symmetric zero padding.
    public static func outputSize(_ size: Int, kernel: Int, stride: Int, pad: Int) -> Int {
        (size + 2 * pad - kernel) / stride + 1
    }

    /// Packs PyTorch's `(cout, cin, kh, kw)` weight into the `(kh*kw*cin, cout)` matrix the columns multiply.
    public static func packWeight(torchWeight: [Float], cout: Int, cin: Int, kernel: Int) -> [Float] {
        precondition(torchWeight.count == cout * cin * kernel * kernel)
        var packed = [Float](repeating: 0, count: torchWeight.count)
        for co in 0..<cout {
            for ci in 0..<cin {
                for ky in 0..<kernel {
                    for kx in 0..<kernel {
                        let row = (ky * kernel + kx) * cin + ci
                        packed[row * cout + co] = torchWeight[((co * cin + ci) * kernel + ky) * kernel + kx]
                    }
                }
            }
        }
        return packed
    }

    /// Fills `columns` (`batch*oh*ow` rows of `kernel*kernel*channels`).
    public static func lower(
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        kernel: Int, stride: Int, pad: Int, columns: UnsafeMutablePointer<Float>
    ) {
        let oh = outputSize(height, kernel: kernel, stride: stride, pad: pad)
        let ow = outputSize(width, kernel: kernel, stride: stride, pad: pad)
        var out = columns
        for n in 0..<batch {
            let image = input + n * height * width * channels
            for oy in 0..<oh {
                for ox in 0..<ow {
                    for ky in 0..<kernel {
                        let iy = oy * stride - pad + ky
                        for kx in 0..<kernel {
                            let ix = ox * stride - pad + kx
                            if iy >= 0 && iy < height && ix >= 0 && ix < width {
                                let src = image + (iy * width + ix) * channels
                                for c in 0..<channels { out[c] = src[c] }
                            } else {
                                for c in 0..<channels { out[c] = 0 }
                            }
                            out += channels
                        }
                    }
                }
            }
        }
    }
}
