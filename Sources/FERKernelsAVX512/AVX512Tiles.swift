/// The AVX-512 micro-kernel behind FERKernels' packed products (`PackedGEMM`, `DenseConvolution`):
/// this module alone is compiled for AVX-512 (`-target-cpu skylake-avx512` in release builds), and
/// FERKernels calls it only where the running CPU has those units (`CPUFeatures`). It knows nothing
/// of shapes or layers: it runs tiles of rows against packed 16-column panels.
///
/// The packed layout is FERKernels' `PackedWeights`: panel `j` holds `k` rows of 16 floats,
/// `values[(j * k + p) * 16 + l]`. A tile is 12 rows x 32 columns (two panels), 24 accumulators of
/// 16 floats, or 12 rows x 16 columns for a last odd panel. Each tile sums the same products in the
/// same order as the AVX2 tile, so the two give the same floats.
public enum AVX512Tiles {
    /// Whether this build holds the AVX-512 code (release builds on x86-64 with the package's CPU
    /// flags). Without it the functions below still run, lowered for whatever the target is.
    public static var compiled: Bool {
        #if FER_AVX512
        return true
        #else
        return false
        #endif
    }

    /// Rows per tile.
    public static let tileRows = 12

    /// Register-only fused multiply-adds at this module's width: 12 independent chains of 16
    /// floats (enough to fill two FMA pipes of 4 cycles' latency), `rounds` times each, nothing
    /// loaded or stored. `2 * 16 * 12 * rounds` flops over the time this takes is this thread's
    /// FMA peak. The result depends on every chain, so none is optimised away.
    @inline(never)
    public static func multiplyAddProbe(rounds: Int, seed: Float) -> Float {
        let x = SIMD16<Float>(repeating: 0.999), y = SIMD16<Float>(repeating: seed * 1e-3)
        var a0 = SIMD16<Float>(repeating: seed + 0)
        var a1 = SIMD16<Float>(repeating: seed + 1)
        var a2 = SIMD16<Float>(repeating: seed + 2)
        var a3 = SIMD16<Float>(repeating: seed + 3)
        var a4 = SIMD16<Float>(repeating: seed + 4)
        var a5 = SIMD16<Float>(repeating: seed + 5)
        var a6 = SIMD16<Float>(repeating: seed + 6)
        var a7 = SIMD16<Float>(repeating: seed + 7)
        var a8 = SIMD16<Float>(repeating: seed + 8)
        var a9 = SIMD16<Float>(repeating: seed + 9)
        var a10 = SIMD16<Float>(repeating: seed + 10)
        var a11 = SIMD16<Float>(repeating: seed + 11)
        for _ in 0..<rounds {
            a0 = a0.addingProduct(x, y)
            a1 = a1.addingProduct(x, y)
            a2 = a2.addingProduct(x, y)
            a3 = a3.addingProduct(x, y)
            a4 = a4.addingProduct(x, y)
            a5 = a5.addingProduct(x, y)
            a6 = a6.addingProduct(x, y)
            a7 = a7.addingProduct(x, y)
            a8 = a8.addingProduct(x, y)
            a9 = a9.addingProduct(x, y)
            a10 = a10.addingProduct(x, y)
            a11 = a11.addingProduct(x, y)
        }
        return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).sum()
    }

    /// The activation applied after the bias (and residual).
    public enum Activation: Equatable, Sendable {
        case identity, relu, leakyRelu(Float)
        /// One slope per column, from ``Epilogue/slopes``.
        case prelu
    }

    /// What the tiles do after the products: `c = activation(sum (+ c) + bias)`.
    public struct Epilogue {
        /// `16 * panels` floats (the packed bias, zeros past `n`), and the packed slopes (any
        /// pointer of that size when the activation is not PReLU).
        public var bias: UnsafePointer<Float>, slopes: UnsafePointer<Float>
        /// Columns of the product (the last panel may be partial).
        public var n: Int
        public var accumulate: Bool
        public var activation: Activation

        public init(bias: UnsafePointer<Float>, slopes: UnsafePointer<Float>, n: Int, accumulate: Bool, activation: Activation) {
            self.bias = bias
            self.slopes = slopes
            self.n = n
            self.accumulate = accumulate
            self.activation = activation
        }
    }

    /// Computes `rows` rows of `c` for the column panels `panels` (of 16 columns), over `k` packed
    /// rows of the weights split into `taps` runs of `depth` (`taps * depth == k`).
    ///
    /// Row `r` reads, for tap `t`, the `depth` floats at `pointers[t * rows + r]`: for a matrix
    /// product there is one tap and the pointers are the rows of `a`; for a convolution each tap
    /// is one kernel position and the pointer the input pixel under it (or a row of zeros in the
    /// padding). Row `r` of the result goes to `c + r * ldc`.
    @inline(never)
    public static func run(
        rows: Int, taps: Int, depth: Int, pointers: UnsafePointer<UnsafePointer<Float>>,
        k: Int, values: UnsafePointer<Float>, panels: Range<Int>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        precondition(taps * depth == k && rows >= 0)
        var j = panels.lowerBound
        while j < panels.upperBound {
            let pair = j + 1 < panels.upperBound
            let panel = values + j * k * 16
            var i = 0
            while i < rows {
                let r = min(tileRows, rows - i)
                let p = pointers + i, out = c + i * ldc + j * 16
                if pair {
                    switch r {
                    case 12: tile(rows: 12, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 11: tile(rows: 11, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 10: tile(rows: 10, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 9: tile(rows: 9, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 8: tile(rows: 8, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 7: tile(rows: 7, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    default: narrowTiles(r, wide: true, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    }
                } else {
                    switch r {
                    case 12: tile(rows: 12, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 11: tile(rows: 11, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 10: tile(rows: 10, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 9: tile(rows: 9, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 8: tile(rows: 8, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    case 7: tile(rows: 7, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    default: narrowTiles(r, wide: false, taps, depth, rows, p, panel, k, out, ldc, j, e)
                    }
                }
                i += r
            }
            j += pair ? 2 : 1
        }
    }

    /// Tiles of 1 to 6 rows, out of line so that the large tiles are the ones inlined above.
    @inline(never)
    static func narrowTiles(
        _ r: Int, wide: Bool, _ taps: Int, _ depth: Int, _ stride: Int, _ p: UnsafePointer<UnsafePointer<Float>>,
        _ panel: UnsafePointer<Float>, _ k: Int, _ out: UnsafeMutablePointer<Float>, _ ldc: Int, _ j: Int, _ e: Epilogue
    ) {
        if wide {
            switch r {
            case 6: tile(rows: 6, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 5: tile(rows: 5, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 4: tile(rows: 4, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 3: tile(rows: 3, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 2: tile(rows: 2, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            default: tile(rows: 1, wide: true, taps, depth, stride, p, panel, k, out, ldc, j, e)
            }
        } else {
            switch r {
            case 6: tile(rows: 6, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 5: tile(rows: 5, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 4: tile(rows: 4, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 3: tile(rows: 3, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            case 2: tile(rows: 2, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            default: tile(rows: 1, wide: false, taps, depth, stride, p, panel, k, out, ldc, j, e)
            }
        }
    }

    /// One tile: `rows` (1...12) rows x one panel, or two when `wide` (both constants where
    /// inlined). `stride` is the distance between taps in `pointers`.
    ///
    /// Transparent, not `@inline(__always)`: the performance inliner stops inlining into a caller
    /// past a size limit, and `run` is past it, which left one copy with `rows` and `wide` tested
    /// inside the inner loop (half the arithmetic rate).
    @_transparent
    static func tile(
        rows: Int, wide: Bool, _ taps: Int, _ depth: Int, _ stride: Int, _ pointers: UnsafePointer<UnsafePointer<Float>>,
        _ panel: UnsafePointer<Float>, _ k: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ j: Int, _ e: Epilogue
    ) {
        let z = SIMD16<Float>(repeating: 0)
        var (c0, c1, c2, c3, c4, c5) = (z, z, z, z, z, z)
        var (c6, c7, c8, c9, c10, c11) = (z, z, z, z, z, z)
        var (d0, d1, d2, d3, d4, d5) = (z, z, z, z, z, z)
        var (d6, d7, d8, d9, d10, d11) = (z, z, z, z, z, z)
        var bp = panel
        let second = k * 16  // the next panel, same row
        for t in 0..<taps {
            let q = pointers + t * stride
            // Rows past `rows` are never read; their pointers repeat row 0.
            let a0 = q[0]
            let a1 = rows > 1 ? q[1] : a0, a2 = rows > 2 ? q[2] : a0, a3 = rows > 3 ? q[3] : a0
            let a4 = rows > 4 ? q[4] : a0, a5 = rows > 5 ? q[5] : a0, a6 = rows > 6 ? q[6] : a0
            let a7 = rows > 7 ? q[7] : a0, a8 = rows > 8 ? q[8] : a0, a9 = rows > 9 ? q[9] : a0
            let a10 = rows > 10 ? q[10] : a0, a11 = rows > 11 ? q[11] : a0
            for p in 0..<depth {
                let b = load(bp)
                let b2 = wide ? load(bp + second) : z
                var x = SIMD16<Float>(repeating: a0[p])
                c0.addProduct(x, b); if wide { d0.addProduct(x, b2) }
                if rows > 1 { x = SIMD16(repeating: a1[p]); c1.addProduct(x, b); if wide { d1.addProduct(x, b2) } }
                if rows > 2 { x = SIMD16(repeating: a2[p]); c2.addProduct(x, b); if wide { d2.addProduct(x, b2) } }
                if rows > 3 { x = SIMD16(repeating: a3[p]); c3.addProduct(x, b); if wide { d3.addProduct(x, b2) } }
                if rows > 4 { x = SIMD16(repeating: a4[p]); c4.addProduct(x, b); if wide { d4.addProduct(x, b2) } }
                if rows > 5 { x = SIMD16(repeating: a5[p]); c5.addProduct(x, b); if wide { d5.addProduct(x, b2) } }
                if rows > 6 { x = SIMD16(repeating: a6[p]); c6.addProduct(x, b); if wide { d6.addProduct(x, b2) } }
                if rows > 7 { x = SIMD16(repeating: a7[p]); c7.addProduct(x, b); if wide { d7.addProduct(x, b2) } }
                if rows > 8 { x = SIMD16(repeating: a8[p]); c8.addProduct(x, b); if wide { d8.addProduct(x, b2) } }
                if rows > 9 { x = SIMD16(repeating: a9[p]); c9.addProduct(x, b); if wide { d9.addProduct(x, b2) } }
                if rows > 10 { x = SIMD16(repeating: a10[p]); c10.addProduct(x, b); if wide { d10.addProduct(x, b2) } }
                if rows > 11 { x = SIMD16(repeating: a11[p]); c11.addProduct(x, b); if wide { d11.addProduct(x, b2) } }
                bp += 16
            }
        }
        finishRow(wide, c0, d0, c, j, e)
        if rows > 1 { finishRow(wide, c1, d1, c + ldc, j, e) }
        if rows > 2 { finishRow(wide, c2, d2, c + 2 * ldc, j, e) }
        if rows > 3 { finishRow(wide, c3, d3, c + 3 * ldc, j, e) }
        if rows > 4 { finishRow(wide, c4, d4, c + 4 * ldc, j, e) }
        if rows > 5 { finishRow(wide, c5, d5, c + 5 * ldc, j, e) }
        if rows > 6 { finishRow(wide, c6, d6, c + 6 * ldc, j, e) }
        if rows > 7 { finishRow(wide, c7, d7, c + 7 * ldc, j, e) }
        if rows > 8 { finishRow(wide, c8, d8, c + 8 * ldc, j, e) }
        if rows > 9 { finishRow(wide, c9, d9, c + 9 * ldc, j, e) }
        if rows > 10 { finishRow(wide, c10, d10, c + 10 * ldc, j, e) }
        if rows > 11 { finishRow(wide, c11, d11, c + 11 * ldc, j, e) }
    }

    /// One tile row's epilogue: panel `j` (and `j + 1` when `wide`).
    @_transparent
    static func finishRow(_ wide: Bool, _ v: SIMD16<Float>, _ w: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>, _ j: Int,
                          _ e: Epilogue) {
        finish(v, out, j, e)
        if wide { finish(w, out + 16, j + 1, e) }
    }

    /// Bias, residual, activation and store of one tile row in panel `j`.
    @_transparent
    static func finish(_ sum: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>, _ j: Int, _ e: Epilogue) {
        let cols = e.n - j * 16
        guard cols >= 16 else { return finishPartial(sum, out, j, e) }
        var v = sum + load(e.bias + j * 16)
        if e.accumulate { v += load(UnsafePointer(out)) }
        activate(&v, j, e)
        UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
    }

    /// ``finish(_:_:_:_:)`` for a last panel of fewer than 16 columns.
    @inline(never)
    static func finishPartial(_ sum: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>, _ j: Int, _ e: Epilogue) {
        let cols = e.n - j * 16
        var v = sum + load(e.bias + j * 16)
        if e.accumulate { for l in 0..<cols { v[l] += out[l] } }
        activate(&v, j, e)
        for l in 0..<cols { out[l] = v[l] }
    }

    @_transparent
    static func activate(_ v: inout SIMD16<Float>, _ j: Int, _ e: Epilogue) {
        switch e.activation {
        case .identity: break
        // Masked blends, as FERKernels' epilogues: the same values, NaN included.
        case .relu: v.replace(with: 0, where: v .< 0)
        case .leakyRelu(let slope): v.replace(with: v * slope, where: v .< 0)
        case .prelu: v.replace(with: v * load(e.slopes + j * 16), where: v .< 0)
        }
    }

    @_transparent
    static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
}

// The depthwise kernel shares this file on purpose: with two files, SwiftPM's multi-threaded
// whole-module build emitted the SIMD16 specialisations of `loadUnaligned` / `storeBytes` in one
// file's object and called them, out of line, from the other's inner loops (the tiles ran at half
// speed). One file, one object: everything inlines.

/// Depthwise convolution at 16 floats a vector, for FERKernels' `Depthwise` (its layouts: NHWC
/// activations with a channel stride, tap-major weights `weights[tap * channels + c]`). Only the
/// hot part is here, whole output rows of square kernels 3, 5 and 7 wide; `Depthwise` does the
/// channels past the last multiple of 16, and chooses this code where the CPU runs it.
public enum AVX512Depthwise {
    /// One output row of a 3x3 kernel at stride 1 or 2, for channels `0 ..< vectorChannels` (a
    /// multiple of 16), kernel rows `kyLo ..< kyHi` inside the image. The row runs in groups of
    /// four pixels with each 16 channels' nine weights held in registers; the last group moves
    /// left to end at the row's end (recomputing a few pixels, to the same floats), and groups
    /// whose window leaves the image read zeros there, as the padding. Sums the taps in the order
    /// `Depthwise`'s 8-float kernel does (bias, then kernel rows, then columns), so the two give
    /// the same floats.
    ///
    /// - Parameters:
    ///   - input: the image's first pixel (channel offset applied).
    ///   - out: the row's first output pixel.
    ///   - iy0: input row of kernel row 0.
    @inline(never)
    public static func row3(
        stride: Int, outWidth: Int, padLeft: Int, input: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, iy0: Int, kyLo: Int, kyHi: Int, width: Int,
        channelStride: Int, channels: Int, vectorChannels: Int
    ) {
        precondition(vectorChannels % 16 == 0 && vectorChannels <= channels && (stride == 1 || stride == 2) && outWidth >= 4)
        precondition(kyLo >= 0 && kyHi <= 3)
        if stride == 1 {
            row(1, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        } else {
            row(2, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        }
    }

    /// ``row3(stride:outWidth:padLeft:input:weights:bias:out:iy0:kyLo:kyHi:width:channelStride:channels:vectorChannels:)``
    /// for square kernels 5 or 7 wide (`kernel`), the weights read from L1 for each group.
    @inline(never)
    public static func row(
        kernel: Int, stride: Int, outWidth: Int, padLeft: Int, input: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, iy0: Int, kyLo: Int, kyHi: Int, width: Int,
        channelStride: Int, channels: Int, vectorChannels: Int
    ) {
        precondition(vectorChannels % 16 == 0 && vectorChannels <= channels && (stride == 1 || stride == 2) && outWidth >= 4)
        precondition(kyLo >= 0 && kyHi <= kernel)
        switch (kernel, stride) {
        case (5, 1): rowOf(5, 1, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        case (5, 2): rowOf(5, 2, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        case (7, 1): rowOf(7, 1, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        case (7, 2): rowOf(7, 2, outWidth, padLeft, input, weights, bias, out, iy0, kyLo, kyHi, width, channelStride, channels, vectorChannels)
        default: preconditionFailure("no AVX-512 row for kernel \(kernel) at stride \(stride)")
        }
    }

    @_transparent
    static func rowOf(
        _ k: Int, _ s: Int, _ ow: Int, _ padLeft: Int, _ input: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, _ iy0: Int, _ kyLo: Int, _ kyHi: Int,
        _ width: Int, _ cs: Int, _ nc: Int, _ vectorChannels: Int
    ) {
        let last = 3 * s + k - 1  // the last input column a group of four reads, from its first
        var c = 0
        while c < vectorChannels {
            let b = bias.map { AVX512Tiles.load($0 + c) } ?? SIMD16<Float>(repeating: 0)
            var ox = 0
            while true {
                let start = min(ox, ow - 4)
                let ix0 = start * s - padLeft
                let p = input + ix0 * cs + c
                var (a0, a1, a2, a3) = (b, b, b, b)
                for ky in kyLo..<kyHi {
                    let q = p + (iy0 + ky) * width * cs, wr = weights + ky * k * nc + c
                    if ix0 >= 0 && ix0 + last < width {
                        kernelRow(k, s, edge: false, q, wr, ix0, width, cs, nc, &a0, &a1, &a2, &a3)
                    } else {
                        kernelRow(k, s, edge: true, q, wr, ix0, width, cs, nc, &a0, &a1, &a2, &a3)
                    }
                }
                storeFour(a0, a1, a2, a3, out + start * cs + c, cs)
                if start == ow - 4 { break }
                ox += 4
            }
            c += 16
        }
    }

    /// One kernel row (`k` = 5 or 7 taps, unrolled: a loop over them was left rolled, each input
    /// column loaded once per tap) for four output pixels whose windows start at `q`.
    @_transparent
    static func kernelRow(
        _ k: Int, _ s: Int, edge: Bool, _ q: UnsafePointer<Float>, _ wr: UnsafePointer<Float>, _ ix0: Int, _ width: Int, _ cs: Int,
        _ nc: Int, _ a0: inout SIMD16<Float>, _ a1: inout SIMD16<Float>, _ a2: inout SIMD16<Float>, _ a3: inout SIMD16<Float>
    ) {
        tap(s, edge: edge, q, 0, ix0, width, cs, AVX512Tiles.load(wr), &a0, &a1, &a2, &a3)
        tap(s, edge: edge, q, 1, ix0, width, cs, AVX512Tiles.load(wr + nc), &a0, &a1, &a2, &a3)
        tap(s, edge: edge, q, 2, ix0, width, cs, AVX512Tiles.load(wr + 2 * nc), &a0, &a1, &a2, &a3)
        tap(s, edge: edge, q, 3, ix0, width, cs, AVX512Tiles.load(wr + 3 * nc), &a0, &a1, &a2, &a3)
        tap(s, edge: edge, q, 4, ix0, width, cs, AVX512Tiles.load(wr + 4 * nc), &a0, &a1, &a2, &a3)
        if k == 7 {
            tap(s, edge: edge, q, 5, ix0, width, cs, AVX512Tiles.load(wr + 5 * nc), &a0, &a1, &a2, &a3)
            tap(s, edge: edge, q, 6, ix0, width, cs, AVX512Tiles.load(wr + 6 * nc), &a0, &a1, &a2, &a3)
        }
    }

    /// Kernel column `kx`'s tap for four output pixels whose windows start at `q`.
    @_transparent
    static func tap(
        _ s: Int, edge: Bool, _ q: UnsafePointer<Float>, _ kx: Int, _ ix0: Int, _ width: Int, _ cs: Int, _ w: SIMD16<Float>,
        _ a0: inout SIMD16<Float>, _ a1: inout SIMD16<Float>, _ a2: inout SIMD16<Float>, _ a3: inout SIMD16<Float>
    ) {
        a0.addProduct(w, column(edge, q, kx, ix0, width, cs))
        a1.addProduct(w, column(edge, q, s + kx, ix0, width, cs))
        a2.addProduct(w, column(edge, q, 2 * s + kx, ix0, width, cs))
        a3.addProduct(w, column(edge, q, 3 * s + kx, ix0, width, cs))
    }

    @_transparent
    static func row(
        _ s: Int, _ ow: Int, _ padLeft: Int, _ input: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, _ iy0: Int, _ kyLo: Int, _ kyHi: Int,
        _ width: Int, _ cs: Int, _ nc: Int, _ vectorChannels: Int
    ) {
        let last = 3 * s + 2  // the last input column a group of four reads, from its first
        let (row0, row1, row2) = (kyLo == 0 && kyHi >= 1, kyLo <= 1 && kyHi >= 2, kyLo <= 2 && kyHi == 3)
        var c = 0
        while c < vectorChannels {
            let w = weights + c
            let w00 = AVX512Tiles.load(w), w01 = AVX512Tiles.load(w + nc), w02 = AVX512Tiles.load(w + 2 * nc)
            let w10 = AVX512Tiles.load(w + 3 * nc), w11 = AVX512Tiles.load(w + 4 * nc), w12 = AVX512Tiles.load(w + 5 * nc)
            let w20 = AVX512Tiles.load(w + 6 * nc), w21 = AVX512Tiles.load(w + 7 * nc), w22 = AVX512Tiles.load(w + 8 * nc)
            let b = bias.map { AVX512Tiles.load($0 + c) } ?? SIMD16<Float>(repeating: 0)
            var ox = 0
            while true {
                let start = min(ox, ow - 4)
                let ix0 = start * s - padLeft
                let p = input + ix0 * cs + c
                var (a0, a1, a2, a3) = (b, b, b, b)
                if ix0 >= 0 && ix0 + last < width {
                    if row0 { taps(s, edge: false, p + (iy0 + 0) * width * cs, ix0, width, cs, w00, w01, w02, &a0, &a1, &a2, &a3) }
                    if row1 { taps(s, edge: false, p + (iy0 + 1) * width * cs, ix0, width, cs, w10, w11, w12, &a0, &a1, &a2, &a3) }
                    if row2 { taps(s, edge: false, p + (iy0 + 2) * width * cs, ix0, width, cs, w20, w21, w22, &a0, &a1, &a2, &a3) }
                } else {
                    if row0 { taps(s, edge: true, p + (iy0 + 0) * width * cs, ix0, width, cs, w00, w01, w02, &a0, &a1, &a2, &a3) }
                    if row1 { taps(s, edge: true, p + (iy0 + 1) * width * cs, ix0, width, cs, w10, w11, w12, &a0, &a1, &a2, &a3) }
                    if row2 { taps(s, edge: true, p + (iy0 + 2) * width * cs, ix0, width, cs, w20, w21, w22, &a0, &a1, &a2, &a3) }
                }
                storeFour(a0, a1, a2, a3, out + start * cs + c, cs)
                if start == ow - 4 { break }
                ox += 4
            }
            c += 16
        }
    }

    /// One kernel row's taps for four output pixels whose windows start at `q` (input column
    /// `ix0`); with `edge`, columns outside `0 ..< width` read as zeros.
    @_transparent
    static func taps(
        _ s: Int, edge: Bool, _ q: UnsafePointer<Float>, _ ix0: Int, _ width: Int, _ cs: Int,
        _ w0: SIMD16<Float>, _ w1: SIMD16<Float>, _ w2: SIMD16<Float>,
        _ a0: inout SIMD16<Float>, _ a1: inout SIMD16<Float>, _ a2: inout SIMD16<Float>, _ a3: inout SIMD16<Float>
    ) {
        let x0 = column(edge, q, 0, ix0, width, cs), x1 = column(edge, q, 1, ix0, width, cs), x2 = column(edge, q, 2, ix0, width, cs)
        let x3 = column(edge, q, 3, ix0, width, cs), x4 = column(edge, q, 4, ix0, width, cs), x5 = column(edge, q, 5, ix0, width, cs)
        if s == 1 {
            a0.addProduct(w0, x0); a1.addProduct(w0, x1); a2.addProduct(w0, x2); a3.addProduct(w0, x3)
            a0.addProduct(w1, x1); a1.addProduct(w1, x2); a2.addProduct(w1, x3); a3.addProduct(w1, x4)
            a0.addProduct(w2, x2); a1.addProduct(w2, x3); a2.addProduct(w2, x4); a3.addProduct(w2, x5)
        } else {
            let x6 = column(edge, q, 6, ix0, width, cs), x7 = column(edge, q, 7, ix0, width, cs), x8 = column(edge, q, 8, ix0, width, cs)
            a0.addProduct(w0, x0); a1.addProduct(w0, x2); a2.addProduct(w0, x4); a3.addProduct(w0, x6)
            a0.addProduct(w1, x1); a1.addProduct(w1, x3); a2.addProduct(w1, x5); a3.addProduct(w1, x7)
            a0.addProduct(w2, x2); a1.addProduct(w2, x4); a2.addProduct(w2, x6); a3.addProduct(w2, x8)
        }
    }

    /// Input column `j` of a window starting at `q` (input column `ix0`); with `edge`, zeros
    /// outside `0 ..< width`, without branches: a column outside reads the row's first pixel
    /// (always inside) and the value is replaced.
    @_transparent
    static func column(_ edge: Bool, _ q: UnsafePointer<Float>, _ j: Int, _ ix0: Int, _ width: Int, _ cs: Int) -> SIMD16<Float> {
        if !edge { return AVX512Tiles.load(q + j * cs) }
        let inside = UInt(bitPattern: ix0 + j) < UInt(width)
        let v = AVX512Tiles.load(inside ? q + j * cs : q - ix0 * cs)
        return inside ? v : SIMD16<Float>(repeating: 0)
    }

    /// Four output pixels' vectors, `cs` floats apart.
    @_transparent
    static func storeFour(
        _ a0: SIMD16<Float>, _ a1: SIMD16<Float>, _ a2: SIMD16<Float>, _ a3: SIMD16<Float>, _ o: UnsafeMutablePointer<Float>, _ cs: Int
    ) {
        store(a0, o)
        store(a1, o + cs)
        store(a2, o + 2 * cs)
        store(a3, o + 3 * cs)
    }

    @_transparent
    static func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
}

/// Elementwise passes at 16 floats a vector, for FERKernels' `Elementwise` and `CoordinatePooling`
/// where the CPU runs them: the same operations in the same order, lane for lane, as their
/// 8-float loops, so the same floats.
public enum AVX512Elementwise {
    /// `x[i] = 1 / (1 + e^-x[i])` for `i < count` (a multiple of 16), in place, with
    /// FERKernels' `Elementwise.exponential` at 16 floats.
    @inline(never)
    public static func sigmoid(_ x: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % 16 == 0)
        let one = SIMD16<Float>(repeating: 1)
        var i = 0
        while i < count {
            let v = AVX512Tiles.load(x + i)
            AVX512Depthwise.store(one / (one + exponential(-v)), x + i)
            i += 16
        }
    }

    /// `Elementwise.exponential`, 16 floats: range reduction by ln 2, a degree-5 polynomial,
    /// the power of two built in the exponent bits.
    @_transparent
    static func exponential(_ x: SIMD16<Float>) -> SIMD16<Float> {
        var x = x
        x.replace(with: -87.3, where: x .< -87.3)
        x.replace(with: 88.3, where: x .> 88.3)
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let shifted = x * 1.44269504088896341 + magic
        let n = shifted - magic
        var r = x - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = SIMD16<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let e = p * r * r + r + 1
        let exponentBits = (unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return e * unsafeBitCast(exponentBits, to: SIMD16<Float>.self)
    }

    /// One image row of coordinate attention's gating: `row[x, c] *= rowGate[c] * columnGates[x, c]`
    /// for `x < width`, `c < vectorChannels` (a multiple of 16); pixels `channels` apart.
    @inline(never)
    public static func gateRow(
        _ row: UnsafeMutablePointer<Float>, width: Int, channels: Int, vectorChannels: Int,
        rowGate: UnsafePointer<Float>, columnGates: UnsafePointer<Float>
    ) {
        precondition(vectorChannels % 16 == 0 && vectorChannels <= channels)
        for x in 0..<width {
            let px = row + x * channels, k = columnGates + x * channels
            var c = 0
            while c < vectorChannels {
                AVX512Depthwise.store(AVX512Tiles.load(px + c) * (AVX512Tiles.load(rowGate + c) * AVX512Tiles.load(k + c)), px + c)
                c += 16
            }
        }
    }
}
