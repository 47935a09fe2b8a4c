import FERKernelsAVX512

/// Shape of a dense (not depthwise) `kernel x kernel` 2-D convolution over NHWC tensors.
///
/// Input `(batch, height, width, inputStride)`, of which channels `0 ..< inputChannels` are read;
/// output `(batch, outHeight, outWidth, outputStride)`, of which channels `0 ..< outputChannels`
/// are written and the others left as they are (an `outputStride` wider than `outputChannels`
/// writes a channel slice of a concatenation: offset the output pointer to the slice's first
/// channel). Zero padding of `padding` on every side and one `stride` for both axes, as PyTorch's
/// `Conv2d(kernel_size=k, stride=s, padding=p)`.
public struct ConvolutionGeometry: Equatable, Sendable {
    public private(set) var batch: Int
    public let height: Int, width: Int
    public let inputChannels: Int
    /// Floats between consecutive input pixels (at least `inputChannels`).
    public let inputStride: Int
    public let outputChannels: Int
    /// Floats between consecutive output pixels (at least `outputChannels`).
    public let outputStride: Int
    public let kernel: Int, stride: Int, padding: Int

    /// Checks the shape; `inputStride` and `outputStride` default to the channel counts.
    public init(
        batch: Int, height: Int, width: Int, inputChannels: Int, inputStride: Int? = nil,
        outputChannels: Int, outputStride: Int? = nil, kernel: Int, stride: Int, padding: Int
    ) throws(ConvolutionError) {
        let ldi = inputStride ?? inputChannels, ldo = outputStride ?? outputChannels
        func fail(_ reason: String) -> ConvolutionError { .invalidGeometry(reason) }
        guard batch >= 0 else { throw fail("batch \(batch) is negative") }
        guard height >= 1, width >= 1 else { throw fail("input \(height)x\(width) is empty") }
        guard inputChannels >= 1, ldi >= inputChannels else { throw fail("\(inputChannels) input channels with pixel stride \(ldi)") }
        guard outputChannels >= 1, ldo >= outputChannels else { throw fail("\(outputChannels) output channels with pixel stride \(ldo)") }
        guard kernel >= 1, stride >= 1, padding >= 0, padding < kernel else {
            throw fail("kernel \(kernel), stride \(stride), padding \(padding)")
        }
        guard height + 2 * padding >= kernel, width + 2 * padding >= kernel else {
            throw fail("a \(kernel)x\(kernel) kernel does not fit a \(height)x\(width) input padded by \(padding)")
        }
        self.batch = batch
        self.height = height
        self.width = width
        self.inputChannels = inputChannels
        self.inputStride = ldi
        self.outputChannels = outputChannels
        self.outputStride = ldo
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
    /// Output pixels of the whole batch: the rows of the convolution's matrix product.
    public var pixels: Int { batch * outHeight * outWidth }
    /// `kernel * kernel * inputChannels`: the product's inner dimension, the rows of its weight.
    public var inner: Int { kernel * kernel * inputChannels }

    /// The same convolution over `batch` images (a plan checks the shape for one image, a pass
    /// runs it for however many it holds).
    public func withBatch(_ batch: Int) -> ConvolutionGeometry {
        precondition(batch >= 0, "batch \(batch)")
        var g = self
        g.batch = batch
        return g
    }
}

/// A convolution shape the kernels cannot run, with the reason.
public enum ConvolutionError: Error, Equatable, CustomStringConvertible {
    case invalidGeometry(String)

    public var description: String {
        switch self {
        case .invalidGeometry(let reason): return "invalid convolution: \(reason)"
        }
    }
}

/// Dense `kernel x kernel` convolutions (any kernel size, stride and padding) with bias, an
/// activation and optionally a residual fused into the store.
///
/// Weights are packed once as ``PackedWeights`` (the ``PackedGEMM`` layout: panels of 16 output
/// channels, `kernel * kernel * inputChannels` rows each, bias and PReLU slopes beside them), from
/// the engine's folded `[kernel, kernel, inputChannels, outputChannels]` weight (``pack(weight:kernel:inputChannels:outputChannels:bias:slopes:)``);
/// the layout is exactly the one ``PackedGEMM`` multiplies (its `k` is `kernel * kernel *
/// inputChannels`), so one packed copy serves both kernels.
///
/// Two ways to run it (``Method``), chosen per shape by ``method(for:)``:
/// - ``Method/indirect``: no lowering. Tiles of 6 consecutive output pixels (in `(n, y, x)` order,
///   across row ends) by 16 output channels accumulate in twelve 8-float registers over every tap
///   and input channel; for each tap the tile reads its 6 input pixels where they are (a pixel
///   that falls in the padding reads a row of zeros from the scratch instead), so the kernel sees
///   the convolution as the product `columns · W` without the columns ever being written. With
///   8 or fewer output channels (one half-empty panel) tiles are 12 pixels by 8 channels.
/// - ``Method/lowered``: blocks of output pixels are lowered (im2col) into a scratch buffer that
///   stays in cache, then multiplied by ``PackedGEMM``.
public enum DenseConvolution {
    /// How ``convolve(_:input:weights:output:accumulate:epilogue:scratch:pixels:method:)`` runs a shape.
    public enum Method: Sendable, CaseIterable {
        /// Indirect tiles read in place (see ``DenseConvolution``).
        case indirect
        /// im2col of cache-sized pixel blocks, then ``PackedGEMM``.
        case lowered
    }

    /// Output pixels per micro-kernel tile.
    static let tileRows = 6
    /// Floats of the lowered method's block buffer (128 KiB: half of a core's L2 on small parts).
    static let loweredBlockFloats = 32 * 1024

    /// Packs the folded weight `weight[(ky * kernel + kx) * inputChannels + ci, co]` (the engine's
    /// `[kernel, kernel, inputChannels, outputChannels]` tensor, row-major) with its bias and PReLU
    /// slopes (`outputChannels` each, or nil).
    public static func pack(
        weight: UnsafePointer<Float>, kernel: Int, inputChannels: Int, outputChannels: Int,
        bias: UnsafePointer<Float>?, slopes: UnsafePointer<Float>?
    ) -> PackedWeights {
        PackedWeights(b: weight, k: kernel * kernel * inputChannels, n: outputChannels, ldb: outputChannels, bias: bias, slopes: slopes)
    }

    /// The method measured faster for `g`: ``Method/indirect`` for every shape measured (RetinaFace's
    /// and LFNSB's 3x3 convolutions, stems included; docs/BENCHMARKS.md, "Dense 3x3 convolutions").
    public static func method(for g: ConvolutionGeometry) -> Method { .indirect }

    /// Floats of scratch memory ``convolve(_:input:weights:output:accumulate:epilogue:scratch:pixels:method:)``
    /// needs for `g` with `method` (by default the one ``method(for:)`` picks). It depends on the
    /// channels and kernel only, not on the image or batch size.
    public static func scratchCount(_ g: ConvolutionGeometry, method: Method? = nil) -> Int {
        switch method ?? self.method(for: g) {
        case .indirect: return g.inputChannels  // one pixel of zeros
        case .lowered: return loweredBlockRows(g) * g.inner
        }
    }

    /// Output pixels per block of the lowered method: a multiple of the tile, about
    /// ``loweredBlockFloats`` of columns.
    static func loweredBlockRows(_ g: ConvolutionGeometry) -> Int {
        max(tileRows, loweredBlockFloats / g.inner / tileRows * tileRows)
    }

    /// `output[n, y, x, co] = epilogue(Σ weight[ky, kx, ci, co] · input[n, y·s - p + ky, x·s - p + kx, ci]
    /// (+ output[n, y, x, co] when accumulating) + bias[co])`, for the whole batch.
    ///
    /// - Parameters:
    ///   - input: `(batch, height, width, inputStride)`.
    ///   - weights: from ``pack(weight:kernel:inputChannels:outputChannels:bias:slopes:)`` for this
    ///     geometry's kernel and channels; `.prelu` needs them packed with slopes.
    ///   - output: `(batch, outHeight, outWidth, outputStride)`; must not overlap `input` or `scratch`.
    ///   - scratch: ``scratchCount(_:method:)`` floats for the method used, any contents; threads
    ///     sharing one convolution each need their own.
    ///   - pixels: the output pixels to compute, in `(n, y, x)` order over the batch (all when
    ///     nil): threads sharing one convolution each take a range.
    ///   - method: nil for ``method(for:)``'s choice.
    ///   - kernel: the tiles to run; nil for ``MicroKernel/forProduct(inner:)``'s choice. The indirect method runs ``MicroKernel/avx512`` tiles for more than 8 output
    ///     channels and kernels up to 3x3, the 8-float tiles otherwise.
    public static func convolve(
        _ g: ConvolutionGeometry, input: UnsafePointer<Float>, weights: PackedWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool = false, epilogue: PackedEpilogue,
        scratch: UnsafeMutablePointer<Float>, pixels: Range<Int>? = nil, method: Method? = nil,
        kernel: MicroKernel? = nil
    ) {
        precondition(weights.k == g.inner && weights.n == g.outputChannels,
                     "weights packed as \(weights.k)x\(weights.n) for a \(g.inner)x\(g.outputChannels) convolution")
        precondition(epilogue != .prelu || weights.slopes != nil, "PReLU epilogue on weights packed without slopes")
        let range = pixels ?? 0..<g.pixels
        precondition(range.lowerBound >= 0 && range.upperBound <= g.pixels, "pixels \(range) of \(g.pixels)")
        if range.isEmpty { return }
        let kernel = kernel ?? MicroKernel.forProduct(inner: g.inner)
        switch method ?? self.method(for: g) {
        case .indirect:
            scratch.update(repeating: 0, count: g.inputChannels)
            if runsNarrowRows(g) {
                return convolveNarrowRows(g, range, input: input, weights: weights, output: output, accumulate: accumulate,
                                          epilogue: epilogue, zeros: UnsafePointer(scratch))
            }
            if kernel == .avx512 && g.outputChannels > 8 && g.kernel * g.kernel <= avx512MaxTaps {
                return convolveIndirectAVX512(g, range, input: input, weights: weights, output: output, accumulate: accumulate,
                                              epilogue: epilogue, zeros: UnsafePointer(scratch))
            }
            convolveIndirect(g, range, input: input, weights: weights, output: output, accumulate: accumulate, epilogue: epilogue,
                             zeros: UnsafePointer(scratch))
        case .lowered:
            convolveLowered(g, range, input: input, weights: weights, output: output, accumulate: accumulate, epilogue: epilogue,
                            columns: scratch, kernel: kernel)
        }
    }

    // MARK: Indirect tiles

    /// Where one output pixel's window starts in the input: `(y, x)` of its top-left tap (negative
    /// in the padding) and the float offset of that position (meaningful only where it is inside).
    struct Origin {
        var y: Int, x: Int, offset: Int

        /// The input pixel under tap `(ky, kx)`, or `zeros` where the tap falls in the padding.
        /// `tap` is `(ky * width + kx) * inputStride`.
        @inline(__always)
        func pointer(_ ky: Int, _ kx: Int, _ tap: Int, height: Int, width: Int,
                     input: UnsafePointer<Float>, zeros: UnsafePointer<Float>) -> UnsafePointer<Float> {
            UInt(bitPattern: y + ky) < UInt(height) && UInt(bitPattern: x + kx) < UInt(width) ? input + (offset + tap) : zeros
        }
    }

    /// Walks output pixels in `(n, y, x)` order, giving each one's ``Origin``.
    struct PixelWalk {
        let outWidth: Int, outHeight: Int, stride: Int, padding: Int, height: Int, width: Int, inputStride: Int
        var n = 0, oy = 0, ox = 0

        init(_ g: ConvolutionGeometry, first: Int) {
            outWidth = g.outWidth; outHeight = g.outHeight; stride = g.stride; padding = g.padding
            height = g.height; width = g.width; inputStride = g.inputStride
            ox = first % outWidth
            oy = first / outWidth % outHeight
            n = first / (outWidth * outHeight)
        }

        /// The current pixel's origin; then moves to the next pixel.
        @inline(__always)
        mutating func next() -> Origin {
            let y = oy * stride - padding, x = ox * stride - padding
            let o = Origin(y: y, x: x, offset: ((n * height + y) * width + x) * inputStride)
            ox += 1
            if ox == outWidth {
                ox = 0
                oy += 1
                if oy == outHeight { oy = 0; n += 1 }
            }
            return o
        }
    }

    static func convolveIndirect(
        _ g: ConvolutionGeometry, _ range: Range<Int>, input: UnsafePointer<Float>, weights: PackedWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: PackedEpilogue, zeros: UnsafePointer<Float>
    ) {
        let end = range.upperBound, ldo = g.outputStride, w = PackedGEMM.panelWidth
        let slopes = weights.slopes ?? weights.bias  // read only by the PReLU epilogue
        var walk = PixelWalk(g, first: range.lowerBound)
        var p = range.lowerBound
        if g.outputChannels <= 8 {
            // One half-empty panel (RetinaFace's stem, 8 channels): 12 pixels x 8 channels a tile.
            let e = PackedGEMM.Epilogue(bias: weights.bias, slopes: slopes, cols: g.outputChannels, accumulate: accumulate, kind: epilogue)
            while p < end {
                let rows = min(2 * tileRows, end - p)
                // Pixels past `rows` repeat the last one (never read).
                let o0 = walk.next()
                let o1 = rows > 1 ? walk.next() : o0
                let o2 = rows > 2 ? walk.next() : o1
                let o3 = rows > 3 ? walk.next() : o2
                let o4 = rows > 4 ? walk.next() : o3
                let o5 = rows > 5 ? walk.next() : o4
                let o6 = rows > 6 ? walk.next() : o5
                let o7 = rows > 7 ? walk.next() : o6
                let o8 = rows > 8 ? walk.next() : o7
                let o9 = rows > 9 ? walk.next() : o8
                let o10 = rows > 10 ? walk.next() : o9
                let o11 = rows > 11 ? walk.next() : o10
                let first = (o0, o1, o2, o3, o4, o5), second = (o6, o7, o8, o9, o10, o11)
                let c = output + p * ldo
                switch rows {
                case 12: narrowTile(rows: 12, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 11: narrowTile(rows: 11, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 10: narrowTile(rows: 10, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 9: narrowTile(rows: 9, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 8: narrowTile(rows: 8, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 7: narrowTile(rows: 7, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 6: narrowTile(rows: 6, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 5: narrowTile(rows: 5, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 4: narrowTile(rows: 4, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 3: narrowTile(rows: 3, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                case 2: narrowTile(rows: 2, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                default: narrowTile(rows: 1, g, first, second, input: input, zeros: zeros, panel: weights.values, c: c, ldc: ldo, e)
                }
                p += rows
            }
            return
        }
        while p < end {
            let rows = min(tileRows, end - p)
            // Pixels past `rows` repeat the last one (never read).
            let o0 = walk.next()
            let o1 = rows > 1 ? walk.next() : o0
            let o2 = rows > 2 ? walk.next() : o1
            let o3 = rows > 3 ? walk.next() : o2
            let o4 = rows > 4 ? walk.next() : o3
            let o5 = rows > 5 ? walk.next() : o4
            let origins = (o0, o1, o2, o3, o4, o5)
            for j in 0..<weights.panels {
                let e = PackedGEMM.Epilogue(bias: weights.bias + j * w, slopes: slopes + j * w, cols: min(w, g.outputChannels - j * w),
                                            accumulate: accumulate, kind: epilogue)
                let panel = weights.values + j * weights.k * w
                let c = output + p * ldo + j * w
                switch rows {
                case 6: tile(rows: 6, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                case 5: tile(rows: 5, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                case 4: tile(rows: 4, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                case 3: tile(rows: 3, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                case 2: tile(rows: 2, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                default: tile(rows: 1, g, origins, input: input, zeros: zeros, panel: panel, c: c, ldc: ldo, e)
                }
            }
            p += rows
        }
    }

    /// Kernel positions the AVX-512 path takes: a 12-pixel tile's input pointers (one per pixel
    /// and tap) stay on the stack.
    static let avx512MaxTaps = 9

    /// ``convolveIndirect(_:_:input:weights:output:accumulate:epilogue:zeros:)`` on
    /// ``MicroKernel/avx512`` tiles of 12 output pixels by 32 channels: the pixels' input pointers,
    /// tap by tap, are gathered once per tile and every panel pair runs over them.
    static func convolveIndirectAVX512(
        _ g: ConvolutionGeometry, _ range: Range<Int>, input: UnsafePointer<Float>, weights: PackedWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: PackedEpilogue, zeros: UnsafePointer<Float>
    ) {
        let taps = g.kernel * g.kernel, tile = AVX512Tiles.tileRows
        let (h, wd, ldi) = (g.height, g.width, g.inputStride)
        let e = AVX512Tiles.Epilogue(bias: weights.bias, slopes: weights.slopes ?? weights.bias, n: g.outputChannels,
                                     accumulate: accumulate, activation: epilogue.avx512)
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: avx512MaxTaps * tile) { buffer in
            let pointers = buffer.baseAddress!
            var walk = PixelWalk(g, first: range.lowerBound)
            var p = range.lowerBound
            while p < range.upperBound {
                let rows = min(tile, range.upperBound - p)
                for r in 0..<rows {
                    let o = walk.next()
                    var t = r
                    for ky in 0..<g.kernel {
                        var tap = ky * wd * ldi
                        for kx in 0..<g.kernel {
                            pointers[t] = o.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                            t += rows
                            tap += ldi
                        }
                    }
                }
                AVX512Tiles.run(rows: rows, taps: taps, depth: g.inputChannels, pointers: pointers, k: weights.k,
                                values: weights.values, panels: 0..<weights.panels, c: output + p * g.outputStride,
                                ldc: g.outputStride, e)
                p += rows
            }
        }
    }

    /// One tile: `rows` (1...6, a constant where inlined) output pixels x one 16-channel panel,
    /// over every tap and input channel, then the epilogue.
    @_transparent  // not @inline(__always): past a caller size limit that is not honoured
    static func tile(
        rows: Int, _ g: ConvolutionGeometry, _ o: (Origin, Origin, Origin, Origin, Origin, Origin),
        input: UnsafePointer<Float>, zeros: UnsafePointer<Float>, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: PackedGEMM.Epilogue
    ) {
        let zero = SIMD8<Float>(repeating: 0)
        var (c0l, c0h, c1l, c1h, c2l, c2h) = (zero, zero, zero, zero, zero, zero)
        var (c3l, c3h, c4l, c4h, c5l, c5h) = (zero, zero, zero, zero, zero, zero)
        let (h, wd, cin, k) = (g.height, g.width, g.inputChannels, g.kernel)
        let rowStep = wd * g.inputStride
        var bp = panel
        for ky in 0..<k {
            var tap = ky * rowStep
            for kx in 0..<k {
                let a0 = o.0.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                let a1 = o.1.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                let a2 = o.2.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                let a3 = o.3.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                let a4 = o.4.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                let a5 = o.5.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros)
                for p in 0..<cin {
                    let bl = loadVector(bp), bh = loadVector(bp + 8)
                    var x = SIMD8<Float>(repeating: a0[p])
                    c0l.addProduct(x, bl); c0h.addProduct(x, bh)
                    if rows > 1 { x = SIMD8<Float>(repeating: a1[p]); c1l.addProduct(x, bl); c1h.addProduct(x, bh) }
                    if rows > 2 { x = SIMD8<Float>(repeating: a2[p]); c2l.addProduct(x, bl); c2h.addProduct(x, bh) }
                    if rows > 3 { x = SIMD8<Float>(repeating: a3[p]); c3l.addProduct(x, bl); c3h.addProduct(x, bh) }
                    if rows > 4 { x = SIMD8<Float>(repeating: a4[p]); c4l.addProduct(x, bl); c4h.addProduct(x, bh) }
                    if rows > 5 { x = SIMD8<Float>(repeating: a5[p]); c5l.addProduct(x, bl); c5h.addProduct(x, bh) }
                    bp += 16
                }
                tap += g.inputStride
            }
        }
        PackedGEMM.finish(c0l, c0h, c, e)
        if rows > 1 { PackedGEMM.finish(c1l, c1h, c + ldc, e) }
        if rows > 2 { PackedGEMM.finish(c2l, c2h, c + 2 * ldc, e) }
        if rows > 3 { PackedGEMM.finish(c3l, c3h, c + 3 * ldc, e) }
        if rows > 4 { PackedGEMM.finish(c4l, c4h, c + 4 * ldc, e) }
        if rows > 5 { PackedGEMM.finish(c5l, c5h, c + 5 * ldc, e) }
    }

    /// One narrow tile: `rows` (1...12, a constant where inlined) output pixels x the first 8
    /// channels of the panel (its only ones: `outputChannels <= 8`), then the epilogue.
    @_transparent  // not @inline(__always): past a caller size limit that is not honoured
    static func narrowTile(
        rows: Int, _ g: ConvolutionGeometry, _ o: (Origin, Origin, Origin, Origin, Origin, Origin),
        _ q: (Origin, Origin, Origin, Origin, Origin, Origin),
        input: UnsafePointer<Float>, zeros: UnsafePointer<Float>, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: PackedGEMM.Epilogue
    ) {
        var sums = PackedGEMM.NarrowSums()
        let (h, wd, cin, k) = (g.height, g.width, g.inputChannels, g.kernel)
        let rowStep = wd * g.inputStride
        var bp = panel
        for ky in 0..<k {
            var tap = ky * rowStep
            for kx in 0..<k {
                func at(_ o: Origin) -> UnsafePointer<Float> { o.pointer(ky, kx, tap, height: h, width: wd, input: input, zeros: zeros) }
                let a = (at(o.0), at(o.1), at(o.2), at(o.3), at(o.4), at(o.5), at(q.0), at(q.1), at(q.2), at(q.3), at(q.4), at(q.5))
                for p in 0..<cin {
                    sums.add(rows: rows, loadVector(bp), a, p)
                    bp += 16
                }
                tap += g.inputStride
            }
        }
        sums.finish(rows: rows, c: c, ldc: ldc, e)
    }

    // MARK: Narrow rows

    /// Whether ``convolveNarrowRows(_:_:input:weights:output:accumulate:epilogue:zeros:)`` runs `g`:
    /// a 3x3 kernel at stride 1 or 2 over 1 to 4 input channels stored densely, into 8 or fewer
    /// output channels (RetinaFace's stem, 3 -> 8 at stride 2).
    static func runsNarrowRows(_ g: ConvolutionGeometry) -> Bool {
        g.kernel == 3 && (g.stride == 1 || g.stride == 2) && g.inputChannels <= 4 && g.inputStride == g.inputChannels
            && g.outputChannels <= 8
    }

    /// The narrow indirect tiles, except that runs of 12 output pixels of one row whose windows
    /// lie inside the image read their inputs at fixed offsets from three row pointers (one per
    /// kernel row), the channel count and stride constants: the general tile keeps a
    /// pointer per pixel and tap, more than there are registers, and reloads them from the stack
    /// for a product of three channels. Pixels near the borders, and runs shorter than 12, take
    /// the general tiles; both sum the taps in the same order.
    static func convolveNarrowRows(
        _ g: ConvolutionGeometry, _ range: Range<Int>, input: UnsafePointer<Float>, weights: PackedWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: PackedEpilogue, zeros: UnsafePointer<Float>
    ) {
        let (ow, oh, s, pad) = (g.outWidth, g.outHeight, g.stride, g.padding)
        // Output columns whose three input columns are all inside the image.
        let xLo = min(ow, (pad + s - 1) / s)
        let xHi = max(xLo, min(ow, (g.width - 3 + pad) / s + 1))
        let e = PackedGEMM.Epilogue(bias: weights.bias, slopes: weights.slopes ?? weights.bias, cols: g.outputChannels,
                                    accumulate: accumulate, kind: epilogue)
        func general(_ pixels: Range<Int>) {
            if !pixels.isEmpty {
                convolveIndirect(g, pixels, input: input, weights: weights, output: output, accumulate: accumulate,
                                 epilogue: epilogue, zeros: zeros)
            }
        }
        var p = range.lowerBound
        while p < range.upperBound {
            let row = p / ow, rowStart = row * ow  // row = n * outHeight + oy
            let rowEnd = min(range.upperBound, rowStart + ow)
            let iy = row % oh * s - pad, n = row / oh
            var x = p - rowStart
            if iy >= 0 && iy + 3 <= g.height {
                let lo = min(max(x, xLo), rowEnd - rowStart), hi = min(xHi, rowEnd - rowStart)
                general(rowStart + x ..< rowStart + lo)
                x = lo
                let r0 = input + ((n * g.height + iy) * g.width) * g.inputChannels
                let rows = (r0, r0 + g.width * g.inputChannels, r0 + 2 * g.width * g.inputChannels)
                switch (g.inputChannels, s) {
                case (1, 1): narrowRowRun(cin: 1, stride: 1, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (2, 1): narrowRowRun(cin: 2, stride: 1, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (3, 1): narrowRowRun(cin: 3, stride: 1, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (4, 1): narrowRowRun(cin: 4, stride: 1, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (1, _): narrowRowRun(cin: 1, stride: 2, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (2, _): narrowRowRun(cin: 2, stride: 2, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                case (3, _): narrowRowRun(cin: 3, stride: 2, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                default: narrowRowRun(cin: 4, stride: 2, rows, &x, hi, pad: pad, panel: weights.values, output + rowStart * g.outputStride, g.outputStride, e)
                }
            }
            general(rowStart + x ..< rowEnd)
            p = rowEnd
        }
    }

    /// Tiles of 12 output pixels of one row from column `x` while they end by `end`, advancing
    /// `x`; `rows` are the input rows under the three kernel rows, `out` the row's first output
    /// pixel. `cin` and `stride` are constants where inlined.
    @_transparent
    static func narrowRowRun(
        cin: Int, stride: Int, _ rows: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>), _ x: inout Int, _ end: Int,
        pad: Int, panel: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ ldc: Int, _ e: PackedGEMM.Epilogue
    ) {
        while x + 2 * tileRows <= end {
            let column = (x * stride - pad) * cin
            narrowRowTile(cin: cin, stride: stride, (rows.0 + column, rows.1 + column, rows.2 + column), panel: panel, out + x * ldc, ldc, e)
            x += 2 * tileRows
        }
    }

    /// One tile of 12 consecutive output pixels x 8 channels whose windows start at `rows`
    /// (input row of each kernel row, at the first pixel's first column), taps and channels in
    /// the order of ``narrowTile(rows:_:_:_:input:zeros:panel:c:ldc:_:)``.
    @_transparent
    static func narrowRowTile(
        cin: Int, stride: Int, _ rows: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
        panel: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ e: PackedGEMM.Epilogue
    ) {
        var sums = PackedGEMM.NarrowSums()
        let step = stride * cin
        var bp = panel
        // A loop over the nine taps the compiler cannot unroll: unrolled, with every offset a
        // constant, it gathered the twelve broadcasts into vector loads and lane extractions and
        // spilled the accumulators (twice as slow).
        for t in 0..<opaque(9) {
            let ky = t / 3, kx = t - 3 * ky
            let r = (ky == 0 ? rows.0 : ky == 1 ? rows.1 : rows.2) + kx * cin
            let a = (r, r + step, r + 2 * step, r + 3 * step, r + 4 * step, r + 5 * step,
                     r + 6 * step, r + 7 * step, r + 8 * step, r + 9 * step, r + 10 * step, r + 11 * step)
            for ci in 0..<cin {
                sums.add(rows: 12, loadVector(bp), a, ci)
                bp += 16
            }
        }
        sums.finish(rows: 12, c: c, ldc: ldc, e)
    }

    /// `value`, hidden from the optimiser.
    @inline(never)
    static func opaque(_ value: Int) -> Int { value }

    // MARK: Lowered blocks

    static func convolveLowered(
        _ g: ConvolutionGeometry, _ range: Range<Int>, input: UnsafePointer<Float>, weights: PackedWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: PackedEpilogue, columns: UnsafeMutablePointer<Float>,
        kernel: MicroKernel
    ) {
        let end = range.upperBound, block = loweredBlockRows(g), k = g.inner
        var walk = PixelWalk(g, first: range.lowerBound)
        var p0 = range.lowerBound
        while p0 < end {
            let m = min(block, end - p0)
            lower(g, &walk, count: m, input: input, columns: columns)
            PackedGEMM.multiply(m: m, a: columns, lda: k, b: weights, c: output + p0 * g.outputStride, ldc: g.outputStride,
                                accumulate: accumulate, epilogue: epilogue, kernel: kernel)
            p0 += m
        }
    }

    /// Writes the im2col rows of the next `count` pixels of `walk`: row `r` holds, tap by tap
    /// (`ky`, then `kx`), the `inputChannels` values under the tap, zeros in the padding.
    static func lower(
        _ g: ConvolutionGeometry, _ walk: inout PixelWalk, count: Int, input: UnsafePointer<Float>,
        columns: UnsafeMutablePointer<Float>
    ) {
        let cin = g.inputChannels
        var out = columns
        for _ in 0..<count {
            let o = walk.next()
            for ky in 0..<g.kernel {
                let rowInside = UInt(bitPattern: o.y + ky) < UInt(g.height)
                var tap = ky * g.width * g.inputStride
                for kx in 0..<g.kernel {
                    if rowInside && UInt(bitPattern: o.x + kx) < UInt(g.width) {
                        let src = input + (o.offset + tap)
                        for c in 0..<cin { out[c] = src[c] }
                    } else {
                        for c in 0..<cin { out[c] = 0 }
                    }
                    out += cin
                    tap += g.inputStride
                }
            }
        }
    }
}

extension DenseConvolution {
    /// The plain loop ``convolve(_:input:weights:output:accumulate:epilogue:scratch:pixels:method:)`` must
    /// agree with, on the unpacked weight `weight[(ky * kernel + kx) * inputChannels + ci, co]`,
    /// accumulating in Double; `bias` and `slopes` have `outputChannels` values or are nil.
    public static func convolveReference(
        _ g: ConvolutionGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, slopes: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, accumulate: Bool = false, epilogue: PackedEpilogue
    ) {
        let (cin, cout) = (g.inputChannels, g.outputChannels)
        for n in 0..<g.batch {
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    let out = output + ((n * g.outHeight + oy) * g.outWidth + ox) * g.outputStride
                    for co in 0..<cout {
                        var sum = 0.0
                        for ky in 0..<g.kernel {
                            let iy = oy * g.stride - g.padding + ky
                            if iy < 0 || iy >= g.height { continue }
                            for kx in 0..<g.kernel {
                                let ix = ox * g.stride - g.padding + kx
                                if ix < 0 || ix >= g.width { continue }
                                let src = input + ((n * g.height + iy) * g.width + ix) * g.inputStride
                                for ci in 0..<cin {
                                    sum += Double(src[ci]) * Double(weight[((ky * g.kernel + kx) * cin + ci) * cout + co])
                                }
                            }
                        }
                        var v = Float(sum) + (accumulate ? out[co] : 0) + (bias?[co] ?? 0)
                        switch epilogue {
                        case .identity: break
                        case .relu: if v < 0 { v = 0 }
                        case .leakyRelu(let s): if v < 0 { v *= s }
                        case .prelu: if v < 0 { v *= slopes![co] }
                        }
                        out[co] = v
                    }
                }
            }
        }
    }
}
