/// Dense 3x3 convolutions at stride 1 by Winograd's minimal filtering F(4x4, 3x3) (Lavin and Gray,
/// "Fast Algorithms for Convolutional Neural Networks", 2016), over the NHWC tensors of
/// ``DenseConvolution`` (same ``ConvolutionGeometry``, channel strides and concatenation slices).
///
/// Each 4x4 block of output pixels (a tile) comes from the 6x6 input window around it: the window
/// is transformed (`Bᵀ d B`), multiplied point by point with the transformed weights (`G g Gᵀ`,
/// made once at load) summed over input channels, and transformed back (`Aᵀ m A`). Summing over
/// channels is, for each of the 36 points, one matrix product `(tiles x inputChannels) ·
/// (inputChannels x outputChannels)`, which ``PackedGEMM`` runs. That takes 36 multiply-adds
/// per tile, input and output channel where the direct convolution takes 16 x 9 = 144: a quarter
/// of the arithmetic, for transforms that cost a few operations per tile and channel.
///
/// The floats differ from the direct sum by rounding (the transforms scale values by up to 8 and
/// 1/24): within 1e-5 of a layer's largest output (`WinogradTests`); RetinaFace's heads stay
/// within the engine's 1e-4 of PyTorch's, and its faces within 0.5 px (fixture tests).
///
/// Tiles run in blocks of ``blockTiles(_:)`` (their transformed windows and products stay in L2);
/// every tile is computed the same way whatever its block, so threads sharing a convolution by
/// tiles get the same floats as one thread.
public enum Winograd {
    /// Output pixels on a tile's side, and the input window's side.
    static let tile = 4, span = 6
    /// Points of the transformed 6x6 window: one matrix product each.
    static let points = 36
    /// Floats of a block's transformed windows and products together (448 KiB, under half of a
    /// Zen 4 core's L2 with the weights of one 64x64 layer beside them).
    static let blockFloats = 112 * 1024

    /// Whether ``convolve(_:input:weights:output:accumulate:epilogue:scratch:tiles:)`` runs `g`: a 3x3
    /// kernel at stride 1, any padding.
    public static func runs(_ g: ConvolutionGeometry) -> Bool { g.kernel == 3 && g.stride == 1 }

    /// Whether a convolution is better run by Winograd than by ``DenseConvolution``: one it
    /// ``runs(_:)`` with 8 or more input and output channels (with fewer, the transforms cost
    /// more than the products they save). RetinaFace's FPN and SSH convolutions (16 to 64
    /// channels, 640x640 input) took 0.41 of the direct tiles' time (docs/BENCHMARKS.md).
    public static func pays(_ g: ConvolutionGeometry) -> Bool {
        runs(g) && g.inputChannels >= 8 && g.outputChannels >= 8
    }

    /// Tiles across and down one image's output.
    static func tilesAcross(_ g: ConvolutionGeometry) -> Int { (g.outWidth + tile - 1) / tile }
    static func tilesDown(_ g: ConvolutionGeometry) -> Int { (g.outHeight + tile - 1) / tile }

    /// Tiles of the whole batch, in `(n, row, column)` order: what threads share.
    public static func tileCount(_ g: ConvolutionGeometry) -> Int { g.batch * tilesDown(g) * tilesAcross(g) }

    /// The multiply-adds of the 36 products for `g`: per tile, point, input and output channel
    /// (the transforms, mostly additions, not counted).
    public static func multiplyAccumulates(_ g: ConvolutionGeometry) -> Int {
        tileCount(g) * points * g.inputChannels * g.outputChannels
    }

    /// Tiles per block: a multiple of the AVX-512 tile's 12 rows, about ``blockFloats`` of
    /// transformed windows and products.
    static func blockTiles(_ g: ConvolutionGeometry) -> Int {
        max(12, blockFloats / (points * (g.inputChannels + g.outputChannels)) / 12 * 12)
    }

    /// Floats of scratch memory ``convolve(_:input:weights:output:accumulate:epilogue:scratch:tiles:)``
    /// needs for `g`, per thread: one block's transformed windows and products, and a pixel of zeros.
    /// It depends on the channels only.
    public static func scratchCount(_ g: ConvolutionGeometry) -> Int {
        blockTiles(g) * points * (g.inputChannels + g.outputChannels) + g.inputChannels
    }

    /// `output[n, y, x, co] = epilogue(Σ weight[ky, kx, ci, co] · input[n, y - p + ky, x - p + kx, ci]
    /// + bias[co] (+ output[n, y, x, co] when accumulating))`, as ``DenseConvolution/convolve(_:input:weights:output:accumulate:epilogue:scratch:pixels:method:kernel:)``
    /// computes it, for the tiles `tiles` (all when nil; see ``tileCount(_:)``).
    ///
    /// - Parameters:
    ///   - weights: from ``WinogradWeights/init(weight:inputChannels:outputChannels:bias:slopes:)``
    ///     for this geometry's channels; `.prelu` needs them made with slopes.
    ///   - output: must not overlap `input` or `scratch`.
    ///   - scratch: ``scratchCount(_:)`` floats, any contents; threads each need their own.
    public static func convolve(
        _ g: ConvolutionGeometry, input: UnsafePointer<Float>, weights: WinogradWeights,
        output: UnsafeMutablePointer<Float>, accumulate: Bool = false, epilogue: PackedEpilogue,
        scratch: UnsafeMutablePointer<Float>, tiles: Range<Int>? = nil
    ) {
        precondition(runs(g), "Winograd F(4x4, 3x3) runs 3x3 kernels at stride 1, not \(g.kernel)x\(g.kernel) stride \(g.stride)")
        precondition(weights.inputChannels == g.inputChannels && weights.outputChannels == g.outputChannels,
                     "weights for \(weights.inputChannels)->\(weights.outputChannels) channels on a \(g.inputChannels)->\(g.outputChannels) convolution")
        precondition(epilogue != .prelu || weights.slopes != nil, "PReLU epilogue on weights made without slopes")
        let range = tiles ?? 0..<tileCount(g)
        precondition(range.lowerBound >= 0 && range.upperBound <= tileCount(g), "tiles \(range) of \(tileCount(g))")
        let (cin, cout, block) = (g.inputChannels, g.outputChannels, blockTiles(g))
        let transformed = scratch, products = scratch + block * points * cin
        let zeros = products + block * points * cout
        zeros.update(repeating: 0, count: cin)
        let e = PackedGEMM.Epilogue(bias: weights.bias, slopes: weights.slopes ?? weights.bias, cols: cout, accumulate: accumulate,
                                    kind: epilogue)
        var t0 = range.lowerBound
        while t0 < range.upperBound {
            let count = min(block, range.upperBound - t0)
            // Tile-major blocks: each tile's 36 points are contiguous (the transforms stream
            // through them), and each point's product reads and writes rows 36 points apart.
            for t in 0..<count {
                transformInput(g, tile: t0 + t, input: input, zeros: zeros, to: transformed + t * points * cin, pointStride: cin)
            }
            for p in 0..<points {
                PackedGEMM.multiply(m: count, a: transformed + p * cin, lda: points * cin, b: weights.points[p],
                                    c: products + p * cout, ldc: points * cout, accumulate: false, epilogue: .identity)
            }
            for t in 0..<count {
                transformOutput(g, tile: t0 + t, from: products + t * points * cout, pointStride: cout, output: output, e)
            }
            t0 += count
        }
    }

    /// The tile's first output pixel: image, row, column.
    @inline(__always)
    static func origin(_ g: ConvolutionGeometry, tile t: Int) -> (n: Int, y: Int, x: Int) {
        let across = tilesAcross(g), down = tilesDown(g)
        return (t / (across * down), t / across % down * tile, t % across * tile)
    }

    // MARK: Input transform

    /// Writes `Bᵀ d B` of tile `t`'s 6x6 input window `d` (zeros outside the image), point `p` of
    /// channels `0 ..< inputChannels` at `to + p * pointStride`.
    static func transformInput(
        _ g: ConvolutionGeometry, tile t: Int, input: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        to out: UnsafeMutablePointer<Float>, pointStride: Int
    ) {
        let o = origin(g, tile: t)
        let y0 = o.y - g.padding, x0 = o.x - g.padding
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: points) { pixels in
            let pixels = pixels.baseAddress!
            for r in 0..<span {
                let y = y0 + r
                let rowInside = UInt(bitPattern: y) < UInt(g.height)
                for s in 0..<span {
                    let x = x0 + s
                    pixels[r * span + s] = rowInside && UInt(bitPattern: x) < UInt(g.width)
                        ? input + ((o.n * g.height + y) * g.width + x) * g.inputStride : zeros
                }
            }
            withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: points) { rows in
                let rows = rows.baseAddress!
                var c = 0
                while c + 8 <= g.inputChannels {
                    transformInput(lanes: 8, pixels, c, rows, out + c, pointStride)
                    c += 8
                }
                if c < g.inputChannels { transformInput(lanes: g.inputChannels - c, pixels, c, rows, out + c, pointStride) }
            }
        }
    }

    /// The input transform of `lanes` (1...8, a constant where inlined) channels from `c`, the
    /// window's pixels at `pixels` (row-major), `rows` a scratch of 36 vectors.
    @inline(__always)
    static func transformInput(
        lanes: Int, _ pixels: UnsafePointer<UnsafePointer<Float>>, _ c: Int, _ rows: UnsafeMutablePointer<SIMD8<Float>>,
        _ out: UnsafeMutablePointer<Float>, _ pointStride: Int
    ) {
        // Along each window row first, then down each column.
        for r in 0..<span {
            let d = pixels + r * span
            let v = inputTransform(load(d[0] + c, lanes), load(d[1] + c, lanes), load(d[2] + c, lanes),
                                   load(d[3] + c, lanes), load(d[4] + c, lanes), load(d[5] + c, lanes))
            let m = rows + r * span
            m[0] = v.0; m[1] = v.1; m[2] = v.2; m[3] = v.3; m[4] = v.4; m[5] = v.5
        }
        for j in 0..<span {
            let v = inputTransform(rows[j], rows[6 + j], rows[12 + j], rows[18 + j], rows[24 + j], rows[30 + j])
            store(v.0, out + j * pointStride, lanes)
            store(v.1, out + (6 + j) * pointStride, lanes)
            store(v.2, out + (12 + j) * pointStride, lanes)
            store(v.3, out + (18 + j) * pointStride, lanes)
            store(v.4, out + (24 + j) * pointStride, lanes)
            store(v.5, out + (30 + j) * pointStride, lanes)
        }
    }

    /// `Bᵀ d` for one column `d` of six values:
    /// ```
    /// Bᵀ = [4  0 -5  0  1  0]
    ///      [0 -4 -4  1  1  0]
    ///      [0  4 -4 -1  1  0]
    ///      [0 -2 -1  2  1  0]
    ///      [0  2 -1 -2  1  0]
    ///      [0  4  0 -5  0  1]
    /// ```
    @inline(__always)
    static func inputTransform(
        _ d0: SIMD8<Float>, _ d1: SIMD8<Float>, _ d2: SIMD8<Float>, _ d3: SIMD8<Float>, _ d4: SIMD8<Float>, _ d5: SIMD8<Float>
    ) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let four = SIMD8<Float>(repeating: 4), minusFour = SIMD8<Float>(repeating: -4)
        let minusFive = SIMD8<Float>(repeating: -5), two = SIMD8<Float>(repeating: 2)
        var r0 = d4
        r0.addProduct(minusFive, d2)
        r0.addProduct(four, d0)
        var a = d4, b = d3
        a.addProduct(minusFour, d2)  // d4 - 4 d2
        b.addProduct(minusFour, d1)  // d3 - 4 d1
        let c = d4 - d2, e = two * (d3 - d1)
        var r5 = d5
        r5.addProduct(minusFive, d3)
        r5.addProduct(four, d1)
        return (r0, a + b, a - b, c + e, c - e, r5)
    }

    // MARK: Output transform

    /// Transforms tile `t`'s products back (`Aᵀ m A`, point `p` of the output channels at `from + p * pointStride`)
    /// and writes its output pixels that are inside the image, through the epilogue (`e` for
    /// every output channel).
    static func transformOutput(
        _ g: ConvolutionGeometry, tile t: Int, from products: UnsafePointer<Float>, pointStride: Int,
        output: UnsafeMutablePointer<Float>, _ e: PackedGEMM.Epilogue
    ) {
        let o = origin(g, tile: t)
        let rows = min(tile, g.outHeight - o.y), columns = min(tile, g.outWidth - o.x)
        let first = output + ((o.n * g.outHeight + o.y) * g.outWidth + o.x) * g.outputStride
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: tile * span) { partial in
            let partial = partial.baseAddress!
            var c = 0
            while c + 8 <= g.outputChannels {
                transformOutput(lanes: 8, g, products + c, pointStride, partial, first + c, rows, columns, c, e)
                c += 8
            }
            if c < g.outputChannels {
                transformOutput(lanes: g.outputChannels - c, g, products + c, pointStride, partial, first + c, rows, columns, c, e)
            }
        }
    }

    /// The output transform of `lanes` (1...8, a constant where inlined) channels from `c`;
    /// `partial` is a scratch of 24 vectors.
    @inline(__always)
    static func transformOutput(
        lanes: Int, _ g: ConvolutionGeometry, _ m: UnsafePointer<Float>, _ pointStride: Int,
        _ partial: UnsafeMutablePointer<SIMD8<Float>>, _ out: UnsafeMutablePointer<Float>, _ rows: Int, _ columns: Int,
        _ c: Int, _ e: PackedGEMM.Epilogue
    ) {
        // Down each column of points first (Aᵀ m: 4 rows of 6), then along the rows.
        for j in 0..<span {
            let v = outputTransform(load(m + j * pointStride, lanes), load(m + (6 + j) * pointStride, lanes),
                                    load(m + (12 + j) * pointStride, lanes), load(m + (18 + j) * pointStride, lanes),
                                    load(m + (24 + j) * pointStride, lanes), load(m + (30 + j) * pointStride, lanes))
            partial[j] = v.0; partial[6 + j] = v.1; partial[12 + j] = v.2; partial[18 + j] = v.3
        }
        // These channels' bias and slopes (padded to whole vectors in WinogradWeights).
        let e = PackedGEMM.Epilogue(bias: e.bias + c, slopes: e.slopes + c, cols: lanes, accumulate: e.accumulate, kind: e.kind)
        for i in 0..<rows {
            let q = partial + i * span
            let v = outputTransform(q[0], q[1], q[2], q[3], q[4], q[5])
            let line = out + i * g.outWidth * g.outputStride
            PackedGEMM.finishNarrow(v.0, line, e)
            if columns > 1 { PackedGEMM.finishNarrow(v.1, line + g.outputStride, e) }
            if columns > 2 { PackedGEMM.finishNarrow(v.2, line + 2 * g.outputStride, e) }
            if columns > 3 { PackedGEMM.finishNarrow(v.3, line + 3 * g.outputStride, e) }
        }
    }

    /// `Aᵀ m` for one column `m` of six values:
    /// ```
    /// Aᵀ = [1  1  1  1  1  0]
    ///      [0  1 -1  2 -2  0]
    ///      [0  1  1  4  4  0]
    ///      [0  1 -1  8 -8  1]
    /// ```
    @inline(__always)
    static func outputTransform(
        _ m0: SIMD8<Float>, _ m1: SIMD8<Float>, _ m2: SIMD8<Float>, _ m3: SIMD8<Float>, _ m4: SIMD8<Float>, _ m5: SIMD8<Float>
    ) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let sum12 = m1 + m2, difference12 = m1 - m2, sum34 = m3 + m4, difference34 = m3 - m4
        var r1 = difference12, r2 = sum12, r3 = difference12 + m5
        r1.addProduct(SIMD8<Float>(repeating: 2), difference34)
        r2.addProduct(SIMD8<Float>(repeating: 4), sum34)
        r3.addProduct(SIMD8<Float>(repeating: 8), difference34)
        return (m0 + sum12 + sum34, r1, r2, r3)
    }

    // MARK: Vectors of 1 to 8 channels

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ lanes: Int) -> SIMD8<Float> {
        if lanes == 8 { return loadVector(p) }
        var v = SIMD8<Float>.zero
        for l in 0..<lanes { v[l] = p[l] }
        return v
    }

    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
        if lanes == 8 { return storeVector(v, p) }
        for l in 0..<lanes { p[l] = v[l] }
    }
}

/// A 3x3 convolution's weights transformed for ``Winograd``: for each of the 36 points of the
/// transformed window, `U[p] = (G g Gᵀ)[p]` over every input and output channel, packed as a
/// ``PackedWeights`` matrix `(inputChannels, outputChannels)`; and the bias and PReLU slopes the
/// output transform applies. Made once when a model is loaded (four times the floats of the
/// weight: 36 points against 9 taps).
///
/// ```
/// G = [ 1/4     0     0 ]
///     [-1/6  -1/6  -1/6 ]
///     [-1/6   1/6  -1/6 ]
///     [1/24  1/12   1/6 ]
///     [1/24 -1/12   1/6 ]
///     [   0     0     1 ]
/// ```
public final class WinogradWeights: @unchecked Sendable {
    // @unchecked: immutable after init; the storage is owned and freed here.
    public let inputChannels: Int, outputChannels: Int
    /// `U[p]` for the 36 points, row-major over the transformed window.
    public let points: [PackedWeights]
    /// The bias (zeros where there is none) and the PReLU slopes (nil when none were given),
    /// `outputChannels` each, zeros after them to a whole number of 8-float vectors.
    public let bias: UnsafePointer<Float>
    public let slopes: UnsafePointer<Float>?
    private let storage: UnsafeMutablePointer<Float>

    /// Transforms the folded weight `weight[(ky * 3 + kx) * inputChannels + ci, co]` (the engine's
    /// `[3, 3, inputChannels, outputChannels]` tensor, row-major), in Double, and packs it.
    public init(weight: UnsafePointer<Float>, inputChannels cin: Int, outputChannels cout: Int,
                bias: UnsafePointer<Float>?, slopes: UnsafePointer<Float>?) {
        precondition(cin >= 1 && cout >= 1, "Winograd weights for \(cin)->\(cout) channels")
        let gm: [Double] = [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                            1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1]  // G, 6x3 row-major
        var transformed = [Float](repeating: 0, count: Winograd.points * cin * cout)
        gm.withUnsafeBufferPointer { gm in
        transformed.withUnsafeMutableBufferPointer { u in
            withUnsafeTemporaryAllocation(of: Double.self, capacity: 18) { left in
                for ci in 0..<cin {
                    for co in 0..<cout {
                        // G g (6x3), then (G g) Gᵀ (6x6).
                        for i in 0..<6 {
                            for kx in 0..<3 {
                                var s = 0.0
                                for ky in 0..<3 { s += gm[i * 3 + ky] * Double(weight[((ky * 3 + kx) * cin + ci) * cout + co]) }
                                left[i * 3 + kx] = s
                            }
                        }
                        for i in 0..<6 {
                            for j in 0..<6 {
                                var s = 0.0
                                for kx in 0..<3 { s += left[i * 3 + kx] * gm[j * 3 + kx] }
                                u[((i * 6 + j) * cin + ci) * cout + co] = Float(s)
                            }
                        }
                    }
                }
            }
        }
        }
        points = transformed.withUnsafeBufferPointer { u in
            (0..<Winograd.points).map { p in
                PackedWeights(b: u.baseAddress! + p * cin * cout, k: cin, n: cout, ldb: cout, bias: nil, slopes: nil)
            }
        }
        let padded = (cout + 7) & ~7
        storage = .allocate(capacity: 2 * padded)
        storage.initialize(repeating: 0, count: 2 * padded)
        if let bias { storage.update(from: bias, count: cout) }
        if let slopes { (storage + padded).update(from: slopes, count: cout) }
        inputChannels = cin
        outputChannels = cout
        self.bias = UnsafePointer(storage)
        self.slopes = slopes == nil ? nil : UnsafePointer(storage + padded)
        byteCount = points.reduce(2 * padded * MemoryLayout<Float>.size) { $0 + $1.byteCount }
    }

    deinit { storage.deallocate() }

    /// ``PackedWeights/touch()`` of every point's matrix.
    @inline(never)
    public func touch() -> Float { points.reduce(0) { $0 + $1.touch() } }

    /// Bytes held.
    public let byteCount: Int
}
