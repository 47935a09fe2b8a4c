/// Geometry of a depthwise (one filter per channel) 2-D convolution over NHWC tensors.
///
/// The convolution reads channels `channelOffset ..< channelOffset + channels` of an input
/// `(batch, height, width, channelStride)` and writes the same channel range of an output
/// `(batch, outHeight, outWidth, channelStride)`. Working on a channel range lets a mixed
/// depthwise layer (several kernel sizes over consecutive channel groups) run in place in one
/// tensor. Padding is zeros, as PyTorch's `Conv2d(padding=...)`.
public struct DepthwiseGeometry: Equatable, Sendable {
    public var batch: Int
    public var height: Int
    public var width: Int
    public var channelStride: Int
    public var channelOffset: Int
    public var channels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var stride: Int
    public var padTop: Int
    public var padLeft: Int

    public init(
        batch: Int, height: Int, width: Int, channelStride: Int, channelOffset: Int = 0, channels: Int,
        kernelHeight: Int, kernelWidth: Int, stride: Int, padTop: Int, padLeft: Int
    ) {
        precondition(batch >= 0 && height > 0 && width > 0 && channels >= 0 && stride > 0)
        precondition(channelOffset >= 0 && channelOffset + channels <= channelStride)
        precondition(kernelHeight > 0 && kernelWidth > 0 && padTop >= 0 && padLeft >= 0)
        self.batch = batch
        self.height = height
        self.width = width
        self.channelStride = channelStride
        self.channelOffset = channelOffset
        self.channels = channels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.stride = stride
        self.padTop = padTop
        self.padLeft = padLeft
        precondition(outHeight > 0 && outWidth > 0, "kernel larger than the padded input")
    }

    /// A square `kernel x kernel` convolution padded by `kernel / 2` on every side.
    public static func square(
        batch: Int, height: Int, width: Int, channelStride: Int, channelOffset: Int = 0, channels: Int,
        kernel: Int, stride: Int
    ) -> DepthwiseGeometry {
        DepthwiseGeometry(
            batch: batch, height: height, width: width, channelStride: channelStride,
            channelOffset: channelOffset, channels: channels, kernelHeight: kernel, kernelWidth: kernel,
            stride: stride, padTop: kernel / 2, padLeft: kernel / 2)
    }

    // PyTorch pads symmetrically: bottom/right padding equals top/left.
    public var outHeight: Int { (height + 2 * padTop - kernelHeight) / stride + 1 }
    public var outWidth: Int { (width + 2 * padLeft - kernelWidth) / stride + 1 }
}

/// Depthwise convolution kernels.
///
/// Weights are packed tap-major: `weights[(ky * kernelWidth + kx) * channels + c]`, so the
/// filters of consecutive channels for one tap are contiguous and load as one SIMD vector.
/// `bias` has `channels` values or is nil.
public enum Depthwise {
    /// Packs PyTorch's depthwise weight `(channels, 1, kh, kw)` into the tap-major layout.
    public static func pack(torchWeight: [Float], channels: Int, kernelHeight: Int, kernelWidth: Int) -> [Float] {
        let taps = kernelHeight * kernelWidth
        precondition(torchWeight.count == channels * taps)
        var packed = [Float](repeating: 0, count: channels * taps)
        for c in 0..<channels {
            for t in 0..<taps { packed[t * channels + c] = torchWeight[c * taps + t] }
        }
        return packed
    }

    /// SIMD kernel: 8 channels per vector, interior and border taps clipped per output pixel.
    public static func convolve(
        _ g: DepthwiseGeometry,
        input: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>
    ) {
        let (oh, ow) = (g.outHeight, g.outWidth)
        let cs = g.channelStride, nc = g.channels
        let kw = g.kernelWidth
        let vectorEnd = nc & ~7
        for n in 0..<g.batch {
            let inImage = input + n * g.height * g.width * cs + g.channelOffset
            let outImage = output + n * oh * ow * cs + g.channelOffset
            for oy in 0..<oh {
                let iy0 = oy * g.stride - g.padTop
                let kyLo = max(0, -iy0), kyHi = min(g.kernelHeight, g.height - iy0)
                for ox in 0..<ow {
                    let ix0 = ox * g.stride - g.padLeft
                    let kxLo = max(0, -ix0), kxHi = min(kw, g.width - ix0)
                    let out = outImage + (oy * ow + ox) * cs
                    var c = 0
                    while c < vectorEnd {
                        var acc = bias.map { loadVector($0 + c) } ?? SIMD8<Float>(repeating: 0)
                        for ky in kyLo..<kyHi {
                            let row = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                            let wrow = weights + ky * kw * nc + c
                            for kx in kxLo..<kxHi {
                                acc.addProduct(loadVector(wrow + kx * nc), loadVector(row + kx * cs))
                            }
                        }
                        storeVector(acc, out + c)
                        c += 8
                    }
                    while c < nc {
                        var acc: Float = bias?[c] ?? 0
                        for ky in kyLo..<kyHi {
                            let row = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                            let wrow = weights + ky * kw * nc + c
                            for kx in kxLo..<kxHi { acc = acc.addingProduct(wrow[kx * nc], row[kx * cs]) }
                        }
                        out[c] = acc
                        c += 1
                    }
                }
            }
        }
    }

    /// The plain loop that ``convolve(_:input:weights:bias:output:)`` must agree with, reading
    /// PyTorch's unpacked weight layout `(channels, 1, kh, kw)` and accumulating in Double.
    public static func convolveReference(
        _ g: DepthwiseGeometry, input: [Float], torchWeight: [Float], bias: [Float]?, output: inout [Float]
    ) {
        for n in 0..<g.batch {
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    for c in 0..<g.channels {
                        var sum = Double(bias?[c] ?? 0)
                        for ky in 0..<g.kernelHeight {
                            for kx in 0..<g.kernelWidth {
                                let iy = oy * g.stride - g.padTop + ky
                                let ix = ox * g.stride - g.padLeft + kx
                                guard iy >= 0, iy < g.height, ix >= 0, ix < g.width else { continue }
                                let x = input[((n * g.height + iy) * g.width + ix) * g.channelStride + g.channelOffset + c]
                                let w = torchWeight[(c * g.kernelHeight + ky) * g.kernelWidth + kx]
                                sum += Double(x) * Double(w)
                            }
                        }
                        output[((n * g.outHeight + oy) * g.outWidth + ox) * g.channelStride + g.channelOffset + c] = Float(sum)
                    }
                }
            }
        }
    }
}

@inline(__always) @usableFromInline
func loadVector(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) @usableFromInline
func loadVector(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) @usableFromInline
func storeVector(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}
