import FERKernelsAVX512

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

    /// SIMD kernel: 8 channels per vector. Output pixels whose taps all fall inside the image
    /// are computed four at a time, so each weight vector is loaded once for four FMAs; border
    /// pixels clip their tap ranges one pixel at a time.
    ///
    /// - Parameters:
    ///   - rows: the output rows to compute, numbered `n * outHeight + oy` over the batch (all
    ///     when nil): threads sharing one convolution each take a range.
    ///   - lanes: the channels to compute, numbered within the geometry's `channels` (all when
    ///     nil): threads may share channels instead. Ranges starting at a multiple of 16 give the
    ///     same floats as a whole pass.
    ///   - kernel: nil for ``MicroKernel/preferred``. With ``MicroKernel/avx512``, square kernels 3,
    ///     5 or 7 wide at stride 1 or 2 run whole rows 16 channels a vector (`AVX512Depthwise`);
    ///     the same floats.
    public static func convolve(
        _ g: DepthwiseGeometry,
        input: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, rows: Range<Int>? = nil, lanes: Range<Int>? = nil, kernel: MicroKernel? = nil
    ) {
        let kernel = kernel ?? MicroKernel.preferred
        precondition(MicroKernel.available.contains(kernel), "\(kernel) kernels on a CPU or build without them")
        let lanes = lanes ?? 0..<g.channels
        precondition(lanes.lowerBound >= 0 && lanes.upperBound <= g.channels, "channels \(lanes) of \(g.channels)")
        let nc = lanes.count
        // From here on, pointers start at the first lane; the weights' tap stride stays `g.channels`.
        let weights = weights + lanes.lowerBound, bias = bias.map { $0 + lanes.lowerBound }
        let (oh, ow) = (g.outHeight, g.outWidth)
        // Channels the AVX-512 kernel takes (whole rows of square kernels 3, 5 or 7 wide); the 8-float one the rest.
        let square = g.kernelWidth == g.kernelHeight && (g.kernelWidth == 3 || g.kernelWidth == 5 || g.kernelWidth == 7)
        let wide = kernel == .avx512 && square && g.stride <= 2 && ow >= 4 ? nc & ~15 : 0
        let cs = g.channelStride
        let rows = rows ?? 0..<g.batch * oh
        precondition(rows.lowerBound >= 0 && rows.upperBound <= g.batch * oh, "rows \(rows) of \(g.batch * oh)")
        // Interior columns: ox * stride - padLeft >= 0 and ox * stride - padLeft + kernelWidth <= width.
        let interiorStart = min(ow, (g.padLeft + g.stride - 1) / g.stride)
        let interiorEnd = max(interiorStart, min(ow, (g.width - g.kernelWidth + g.padLeft) / g.stride + 1))
        for row in rows {
            let (n, oy) = row.quotientAndRemainder(dividingBy: oh)
            let inImage = input + n * g.height * g.width * cs + g.channelOffset + lanes.lowerBound
            let outImage = output + n * oh * ow * cs + g.channelOffset + lanes.lowerBound
            let iy0 = oy * g.stride - g.padTop
            let kyLo = max(0, -iy0), kyHi = min(g.kernelHeight, g.height - iy0)
            let outRow = outImage + oy * ow * cs
            if wide > 0 && g.kernelWidth == 3 {
                AVX512Depthwise.row3(
                    stride: g.stride, outWidth: ow, padLeft: g.padLeft, input: inImage, weights: weights, bias: bias, out: outRow,
                    iy0: iy0, kyLo: kyLo, kyHi: kyHi, width: g.width, channelStride: cs, channels: g.channels, vectorChannels: wide)
            } else if wide > 0 {
                AVX512Depthwise.row(
                    kernel: g.kernelWidth, stride: g.stride, outWidth: ow, padLeft: g.padLeft, input: inImage, weights: weights,
                    bias: bias, out: outRow, iy0: iy0, kyLo: kyLo, kyHi: kyHi, width: g.width, channelStride: cs, channels: g.channels,
                    vectorChannels: wide)
            }
            if wide == nc { continue }
            var ox = 0
            while ox < interiorStart {
                edgePixel(g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: wide)
                ox += 1
            }
            if g.kernelWidth == 3 && g.stride == 1 {
                while ox + 4 <= interiorEnd {
                    fourPixels3(stride: 1, g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: wide)
                    ox += 4
                }
            } else if g.kernelWidth == 3 && g.stride == 2 {
                while ox + 4 <= interiorEnd {
                    fourPixels3(stride: 2, g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: wide)
                    ox += 4
                }
            } else {
                while ox + 4 <= interiorEnd {
                    fourPixels(g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: wide)
                    ox += 4
                }
            }
            while ox < ow {
                edgePixel(g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: wide)
                ox += 1
            }
        }
    }

    /// One pixel outside the four-pixel groups (borders, leftovers): kernels 3 wide with the
    /// taps that fall inside the image unrolled (the three column ranges a 3-wide kernel can
    /// have), others through ``pixel(_:_:_:_:_:ox:iy0:kyLo:kyHi:)``.
    @inline(__always)
    private static func edgePixel(
        _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ outRow: UnsafeMutablePointer<Float>, ox: Int, iy0: Int, kyLo: Int, kyHi: Int, from: Int
    ) {
        if g.kernelWidth == 3 {
            let ix0 = ox * g.stride - g.padLeft
            let (lo, hi) = (max(0, -ix0), min(3, g.width - ix0))
            if lo == 0 && hi == 3 { return pixel3(kxLo: 0, kxHi: 3, g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: from) }
            if lo == 1 && hi == 3 { return pixel3(kxLo: 1, kxHi: 3, g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: from) }
            if lo == 0 && hi == 2 { return pixel3(kxLo: 0, kxHi: 2, g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: from) }
        }
        pixel(g, nc, inImage, weights, bias, outRow, ox: ox, iy0: iy0, kyLo: kyLo, kyHi: kyHi, from: from)
    }

    /// One pixel of a kernel 3 wide over kernel columns `kxLo ..< kxHi` (constants where
    /// inlined), channels from `from`: the bias, then the taps row by row, the order of every
    /// other path for kernels 3 wide (AVX-512's whole rows included), so all give the same floats.
    @inline(__always)
    private static func pixel3(
        kxLo: Int, kxHi: Int, _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ outRow: UnsafeMutablePointer<Float>, ox: Int, iy0: Int, kyLo: Int, kyHi: Int, from: Int
    ) {
        let cs = g.channelStride, wn = g.channels
        let ix0 = ox * g.stride - g.padLeft
        let out = outRow + ox * cs
        let vectorEnd = nc & ~7
        var c = from
        while c < vectorEnd {
            var acc = SIMD8<Float>(repeating: 0)
            if let bias { acc = loadVector(bias + c) }
            for ky in kyLo..<kyHi {
                let row = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                let wrow = weights + ky * 3 * wn + c
                if kxLo == 0 { acc.addProduct(loadVector(wrow), loadVector(row)) }
                acc.addProduct(loadVector(wrow + wn), loadVector(row + cs))
                if kxHi == 3 { acc.addProduct(loadVector(wrow + 2 * wn), loadVector(row + 2 * cs)) }
            }
            storeVector(acc, out + c)
            c += 8
        }
        scalarTail(g, nc, inImage, weights, bias, out, from: c, ix0: ix0, iy0: iy0, kyLo: kyLo, kyHi: kyHi, kxLo: kxLo, kxHi: kxHi)
    }

    /// One output pixel, taps clipped to the image.
    @inline(__always)
    private static func pixel(
        _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ outRow: UnsafeMutablePointer<Float>, ox: Int, iy0: Int, kyLo: Int, kyHi: Int, from: Int
    ) {
        let cs = g.channelStride, wn = g.channels, kw = g.kernelWidth
        let ix0 = ox * g.stride - g.padLeft
        let kxLo = max(0, -ix0), kxHi = min(kw, g.width - ix0)
        let out = outRow + ox * cs
        let vectorEnd = nc & ~7
        var c = from
        // The bias, then the taps row by row: the order of the four-pixel paths, AVX-512's included.
        while c < vectorEnd {
            var acc = SIMD8<Float>(repeating: 0)
            if let bias { acc = loadVector(bias + c) }
            for ky in kyLo..<kyHi {
                let row = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                let wrow = weights + ky * kw * wn + c
                for kx in kxLo..<kxHi { acc.addProduct(loadVector(wrow + kx * wn), loadVector(row + kx * cs)) }
            }
            storeVector(acc, out + c)
            c += 8
        }
        scalarTail(g, nc, inImage, weights, bias, out, from: c, ix0: ix0, iy0: iy0, kyLo: kyLo, kyHi: kyHi, kxLo: kxLo, kxHi: kxHi)
    }

    /// Four horizontally adjacent output pixels whose taps are all inside the image columns.
    @inline(__always)
    private static func fourPixels(
        _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ outRow: UnsafeMutablePointer<Float>, ox: Int, iy0: Int, kyLo: Int, kyHi: Int, from: Int
    ) {
        let cs = g.channelStride, wn = g.channels, kw = g.kernelWidth
        let step = g.stride * cs  // distance between the inputs of neighbouring output pixels
        let ix0 = ox * g.stride - g.padLeft
        let out = outRow + ox * cs
        let vectorEnd = nc & ~7
        var c = from
        // 16 channels x 4 pixels: eight independent accumulators keep both FMA units busy.
        while c + 16 <= nc {
            var a0 = SIMD8<Float>(repeating: 0), b0 = SIMD8<Float>(repeating: 0)
            if let bias { a0 = loadVector(bias + c); b0 = loadVector(bias + c + 8) }
            var (a1, a2, a3) = (a0, a0, a0)
            var (b1, b2, b3) = (b0, b0, b0)
            for ky in kyLo..<kyHi {
                var p = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                var wp = weights + ky * kw * wn + c
                for _ in 0..<kw {
                    let w = loadVector(wp), v = loadVector(wp + 8)
                    a0.addProduct(w, loadVector(p))
                    b0.addProduct(v, loadVector(p + 8))
                    a1.addProduct(w, loadVector(p + step))
                    b1.addProduct(v, loadVector(p + step + 8))
                    a2.addProduct(w, loadVector(p + 2 * step))
                    b2.addProduct(v, loadVector(p + 2 * step + 8))
                    a3.addProduct(w, loadVector(p + 3 * step))
                    b3.addProduct(v, loadVector(p + 3 * step + 8))
                    p += cs
                    wp += wn
                }
            }
            storeVector(a0, out + c)
            storeVector(b0, out + c + 8)
            storeVector(a1, out + cs + c)
            storeVector(b1, out + cs + c + 8)
            storeVector(a2, out + 2 * cs + c)
            storeVector(b2, out + 2 * cs + c + 8)
            storeVector(a3, out + 3 * cs + c)
            storeVector(b3, out + 3 * cs + c + 8)
            c += 16
        }
        while c < vectorEnd {
            var a0 = SIMD8<Float>(repeating: 0)
            if let bias { a0 = loadVector(bias + c) }
            var (a1, a2, a3) = (a0, a0, a0)
            for ky in kyLo..<kyHi {
                var p = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                var wp = weights + ky * kw * wn + c
                for _ in 0..<kw {
                    let w = loadVector(wp)
                    a0.addProduct(w, loadVector(p))
                    a1.addProduct(w, loadVector(p + step))
                    a2.addProduct(w, loadVector(p + 2 * step))
                    a3.addProduct(w, loadVector(p + 3 * step))
                    p += cs
                    wp += wn
                }
            }
            storeVector(a0, out + c)
            storeVector(a1, out + cs + c)
            storeVector(a2, out + 2 * cs + c)
            storeVector(a3, out + 3 * cs + c)
            c += 8
        }
        for i in 0..<4 where c < nc {
            scalarTail(g, nc, inImage, weights, bias, out + i * cs, from: c, ix0: ix0 + i * g.stride, iy0: iy0,
                       kyLo: kyLo, kyHi: kyHi, kxLo: 0, kxHi: kw)
        }
    }

    /// ``fourPixels(_:_:_:_:_:ox:iy0:kyLo:kyHi:)`` for a kernel 3 wide at stride 1 or 2 (a constant
    /// where inlined): the three taps of a kernel row unrolled, each input vector loaded once
    /// for every output pixel that reads it (6 loads for 4 pixels at stride 1, 9 at stride 2).
    /// Channels from `from` (a multiple of 8; those before are done already).
    @inline(__always)
    private static func fourPixels3(
        stride s: Int, _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ outRow: UnsafeMutablePointer<Float>, ox: Int, iy0: Int, kyLo: Int, kyHi: Int,
        from: Int
    ) {
        let cs = g.channelStride, wn = g.channels
        let ix0 = ox * s - g.padLeft
        let out = outRow + ox * cs
        let vectorEnd = nc & ~7
        var c = from
        while c < vectorEnd {
            var a0 = SIMD8<Float>(repeating: 0)
            if let bias { a0 = loadVector(bias + c) }
            var (a1, a2, a3) = (a0, a0, a0)
            for ky in kyLo..<kyHi {
                let p = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                let wp = weights + ky * 3 * wn + c
                let w0 = loadVector(wp), w1 = loadVector(wp + wn), w2 = loadVector(wp + 2 * wn)
                let x0 = loadVector(p), x1 = loadVector(p + cs), x2 = loadVector(p + 2 * cs)
                let x3 = loadVector(p + 3 * cs), x4 = loadVector(p + 4 * cs)
                if s == 1 {
                    let x5 = loadVector(p + 5 * cs)
                    a0.addProduct(w0, x0); a1.addProduct(w0, x1); a2.addProduct(w0, x2); a3.addProduct(w0, x3)
                    a0.addProduct(w1, x1); a1.addProduct(w1, x2); a2.addProduct(w1, x3); a3.addProduct(w1, x4)
                    a0.addProduct(w2, x2); a1.addProduct(w2, x3); a2.addProduct(w2, x4); a3.addProduct(w2, x5)
                } else {
                    let x5 = loadVector(p + 5 * cs), x6 = loadVector(p + 6 * cs)
                    let x7 = loadVector(p + 7 * cs), x8 = loadVector(p + 8 * cs)
                    a0.addProduct(w0, x0); a1.addProduct(w0, x2); a2.addProduct(w0, x4); a3.addProduct(w0, x6)
                    a0.addProduct(w1, x1); a1.addProduct(w1, x3); a2.addProduct(w1, x5); a3.addProduct(w1, x7)
                    a0.addProduct(w2, x2); a1.addProduct(w2, x4); a2.addProduct(w2, x6); a3.addProduct(w2, x8)
                }
            }
            storeVector(a0, out + c)
            storeVector(a1, out + cs + c)
            storeVector(a2, out + 2 * cs + c)
            storeVector(a3, out + 3 * cs + c)
            c += 8
        }
        for i in 0..<4 where c < nc {
            scalarTail(g, nc, inImage, weights, bias, out + i * cs, from: c, ix0: ix0 + i * s, iy0: iy0,
                       kyLo: kyLo, kyHi: kyHi, kxLo: 0, kxHi: 3)
        }
    }

    /// Channels `from..<channels` of one pixel, one at a time, over the given tap ranges.
    @inline(__always)
    private static func scalarTail(
        _ g: DepthwiseGeometry, _ nc: Int, _ inImage: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, from: Int, ix0: Int, iy0: Int,
        kyLo: Int, kyHi: Int, kxLo: Int, kxHi: Int
    ) {
        let cs = g.channelStride, wn = g.channels, kw = g.kernelWidth
        for c in from..<nc {
            var acc: Float = bias?[c] ?? 0
            for ky in kyLo..<kyHi {
                let row = inImage + ((iy0 + ky) * g.width + ix0) * cs + c
                let wrow = weights + ky * kw * wn + c
                for kx in kxLo..<kxHi { acc = acc.addingProduct(wrow[kx * wn], row[kx * cs]) }
            }
            out[c] = acc
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
