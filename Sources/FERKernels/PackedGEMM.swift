import FERKernelsAVX512

/// A right-hand matrix `b (k, n)` of ``PackedGEMM`` in its micro-kernel's layout, with the
/// per-column bias and PReLU slopes of the epilogue, packed once when a model is loaded.
///
/// Layout: `panels = ceil(n / 16)` panels of 16 columns; panel `j` holds columns `16j ..< 16j + 16`
/// row by row, `values[(j * k + p) * 16 + l] = b[p, 16j + l]`, so the micro-kernel reads one
/// contiguous stream of 64-byte rows. Columns past `n` in the last panel are zeros, as are the
/// padded bias and slopes (the kernel then needs no column tail inside its loop).
public final class PackedWeights: @unchecked Sendable {
    // @unchecked: immutable after init; the storage is owned and freed here.
    /// Rows of `b` (the product's inner dimension) and columns (output channels).
    public let k: Int, n: Int
    /// Panels of ``PackedGEMM/panelWidth`` columns.
    public let panels: Int
    /// `panels * k * 16` floats, panel-major (see the type's description).
    public let values: UnsafePointer<Float>
    /// `panels * 16` floats: the bias, zeros where there is none and past `n`.
    public let bias: UnsafePointer<Float>
    /// `panels * 16` PReLU slopes, or nil when none were packed.
    public let slopes: UnsafePointer<Float>?
    private let storage: UnsafeMutablePointer<Float>

    /// Packs `b (k, n)` with row stride `ldb`, and optionally a bias and PReLU slopes of `n` values.
    public init(b: UnsafePointer<Float>, k: Int, n: Int, ldb: Int, bias: UnsafePointer<Float>?, slopes: UnsafePointer<Float>?) {
        precondition(k >= 1 && n >= 1 && ldb >= n, "packed matrix \(k)x\(n) with row stride \(ldb)")
        let w = PackedGEMM.panelWidth
        let panels = (n + w - 1) / w
        let width = panels * w
        let count = panels * k * w + width * (slopes == nil ? 1 : 2)
        storage = .allocate(capacity: count)
        byteCount = count * MemoryLayout<Float>.size
        storage.initialize(repeating: 0, count: count)
        for j in 0..<panels {
            for p in 0..<k {
                let dst = storage + (j * k + p) * w
                for l in 0..<min(w, n - j * w) { dst[l] = b[p * ldb + j * w + l] }
            }
        }
        let biasStart = storage + panels * k * w
        if let bias { biasStart.update(from: bias, count: n) }
        var slopeStart: UnsafeMutablePointer<Float>? = nil
        if let slopes {
            slopeStart = biasStart + width
            slopeStart!.update(from: slopes, count: n)
        }
        self.k = k
        self.n = n
        self.panels = panels
        values = UnsafePointer(storage)
        self.bias = UnsafePointer(biasStart)
        self.slopes = slopeStart.map { UnsafePointer($0) }
    }

    deinit { storage.deallocate() }

    /// Reads one float of every cache line of the packed values and returns their sum (which
    /// keeps the reads): run just before the product that needs them, it brings them into the
    /// cache with many reads in flight. A pass's weights outgrow L2, and the tiles, whose reads
    /// wait behind their multiply-adds, otherwise stall on L3 each time a panel comes in
    /// (LFNSB: 5% of a pass; docs/BENCHMARKS.md).
    @inline(never)
    public func touch() -> Float {
        let p = UnsafeRawPointer(storage)
        // Four sums: one chain of dependent adds would be slower than the reads.
        var (s0, s1, s2, s3): (Float, Float, Float, Float) = (0, 0, 0, 0)
        var offset = 0
        while offset + 256 <= byteCount {
            s0 += p.load(fromByteOffset: offset, as: Float.self)
            s1 += p.load(fromByteOffset: offset + 64, as: Float.self)
            s2 += p.load(fromByteOffset: offset + 128, as: Float.self)
            s3 += p.load(fromByteOffset: offset + 192, as: Float.self)
            offset += 256
        }
        while offset < byteCount {
            s0 += p.load(fromByteOffset: offset, as: Float.self)
            offset += 64
        }
        return (s0 + s1) + (s2 + s3)
    }

    /// Bytes held.
    public let byteCount: Int
}

/// The activation a ``PackedGEMM`` product applies in its epilogue, after the bias.
public enum PackedEpilogue: Equatable, Sendable {
    case identity
    case relu
    case leakyRelu(Float)
    /// One slope per column, from ``PackedWeights/slopes``.
    case prelu

    /// The same activation for the AVX-512 tiles.
    var avx512: AVX512Tiles.Activation {
        switch self {
        case .identity: return .identity
        case .relu: return .relu
        case .leakyRelu(let s): return .leakyRelu(s)
        case .prelu: return .prelu
        }
    }
}

/// `c[m, n] = epilogue(a[m, k] · b[k, n] (+ c[m, n] when accumulating) + bias[n])`, with `b`
/// packed (``PackedWeights``) and a register-blocked micro-kernel: tiles of 6 rows x 16 columns
/// held in twelve 8-float accumulators, one broadcast of `a` against two loads of `b` per
/// row and step of `k`, fused multiply-adds (AVX2 and FMA in this package's release builds;
/// any target's SIMD otherwise). Rows of `a` are read in place (row stride `lda`), so the
/// activations of a 1x1 convolution (NHWC: a row is a pixel) are its left-hand matrix as they are.
/// A last panel of 8 or fewer columns runs tiles of 12 rows x 8 columns instead, on every kernel.
public enum PackedGEMM {
    /// Columns per panel of packed weights, and per micro-kernel tile.
    public static let panelWidth = 16
    /// Rows per micro-kernel tile.
    static let tileRows = 6
    /// Bytes of `a` one row block should take, so it stays in L1 while every panel passes over it.
    static let blockBytes = 24 * 1024

    /// Runs the product for rows `0 ..< m` of `a` and `c`.
    ///
    /// - Parameters:
    ///   - a: `m` rows of `b.k` values, row stride `lda`.
    ///   - c: `m` rows of `b.n` values, row stride `ldc`; read first when `accumulate` is true.
    ///   - epilogue: applied after the bias; `.prelu` needs weights packed with slopes.
    ///   - kernel: the tiles to run; nil for ``MicroKernel/forProduct(inner:)``'s choice.
    public static func multiply(
        m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedWeights,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, epilogue: PackedEpilogue,
        kernel: MicroKernel? = nil
    ) {
        multiply(m: m, a: a, lda: lda, b: b, panels: 0..<b.panels, c: c, ldc: ldc, accumulate: accumulate, epilogue: epilogue,
                 kernel: kernel)
    }

    /// The product over a range of column panels only (columns `16 * panels.lowerBound ..<
    /// min(n, 16 * panels.upperBound)`): threads sharing one product each take some panels.
    public static func multiply(
        m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedWeights, panels: Range<Int>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, epilogue: PackedEpilogue,
        kernel: MicroKernel? = nil
    ) {
        precondition(m >= 0 && lda >= b.k && ldc >= b.n && panels.lowerBound >= 0 && panels.upperBound <= b.panels)
        precondition(epilogue != .prelu || b.slopes != nil, "PReLU epilogue on weights packed without slopes")
        let kernel = kernel ?? MicroKernel.forProduct(inner: b.k)
        precondition(MicroKernel.available.contains(kernel), "\(kernel) tiles on a CPU or build without them")
        var panels = panels
        if let j = panels.last, b.n - j * panelWidth <= 8 {
            // A last panel of 8 or fewer columns runs the 8-float narrow tiles, whatever the
            // kernel: a 16-float tile there is mostly padding (twice the work where 512-bit
            // operations take two 256-bit halves, as on Zen 4).
            let e = Epilogue(bias: b.bias + j * panelWidth, slopes: (b.slopes ?? b.bias) + j * panelWidth, cols: b.n - j * panelWidth,
                             accumulate: accumulate, kind: epilogue)
            narrowPanel(rows: 0..<m, k: b.k, a: a, lda: lda, panel: b.values + j * b.k * panelWidth, c: c + j * panelWidth, ldc: ldc, e)
            panels = panels.lowerBound..<j
            if panels.isEmpty { return }
        }
        if kernel == .avx512 {
            return multiplyAVX512(m: m, a: a, lda: lda, b: b, panels: panels, c: c, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
        }
        let k = b.k, w = panelWidth
        let slopes = b.slopes ?? b.bias  // read only by the PReLU epilogue
        let blockRows = max(tileRows, blockBytes / (4 * k) / tileRows * tileRows)
        var i0 = 0
        while i0 < m {
            // A last block under one tile joins the one before it.
            let i1 = m - (i0 + blockRows) < tileRows ? m : i0 + blockRows
            for j in panels {
                let cols = min(w, b.n - j * w)
                let panel = b.values + j * k * w
                let e = Epilogue(bias: b.bias + j * w, slopes: slopes + j * w, cols: cols, accumulate: accumulate, kind: epilogue)
                var i = i0
                // Seven rows left run as 4 + 3: a lone last row would be one chain of dependent FMAs.
                while i + tileRows <= i1 && i1 - i != tileRows + 1 {
                    tile(rows: 6, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc + j * w, ldc: ldc, e)
                    i += tileRows
                }
                if i < i1 { tail(rows: i1 - i, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc + j * w, ldc: ldc, e) }
            }
            i0 = i1
        }
    }

    /// Rows per block of the AVX-512 path: its row pointers (one per row) stay on the stack.
    static let avx512BlockRows = 96

    /// ``multiply(m:a:lda:b:panels:c:ldc:accumulate:epilogue:kernel:)`` on ``MicroKernel/avx512``
    /// tiles: blocks of rows that stay in L1 while every panel passes over them.
    static func multiplyAVX512(
        m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedWeights, panels: Range<Int>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, epilogue: PackedEpilogue
    ) {
        let tile = AVX512Tiles.tileRows
        let blockRows = min(avx512BlockRows, max(tile, blockBytes / (4 * b.k) / tile * tile))
        let e = AVX512Tiles.Epilogue(bias: b.bias, slopes: b.slopes ?? b.bias, n: b.n, accumulate: accumulate,
                                     activation: epilogue.avx512)
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: avx512BlockRows + tile) { rows in
            let rows = rows.baseAddress!
            var i0 = 0
            while i0 < m {
                // A last block under one tile joins the one before it (each block streams every panel once).
                let count = m - i0 - blockRows < tile ? m - i0 : blockRows
                for r in 0..<count { rows[r] = a + (i0 + r) * lda }
                AVX512Tiles.run(rows: count, taps: 1, depth: b.k, pointers: rows, k: b.k, values: b.values, panels: panels,
                                c: c + i0 * ldc, ldc: ldc, e)
                i0 += count
            }
        }
    }

    /// The last 1 to 7 rows of a row block (7 as 4 + 3), out of line so that the 6-row tile is
    /// the one inlined into the loop above.
    @inline(never)
    static func tail(
        rows: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        switch rows {
        case 7:
            tile(rows: 4, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
            tile(rows: 3, k: k, a: a + 4 * lda, lda: lda, panel: panel, c: c + 4 * ldc, ldc: ldc, e)
        case 5: tile(rows: 5, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 4: tile(rows: 4, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 3: tile(rows: 3, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 2: tile(rows: 2, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 1: tile(rows: 1, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        default: preconditionFailure("tail of \(rows) rows")
        }
    }

    /// Rows per narrow tile (8 columns: twelve accumulators).
    static let narrowTileRows = 12

    /// Rows `rows` of a panel whose valid columns are 8 or fewer (`e.cols`), in tiles of 12 rows
    /// by its first 8 columns.
    static func narrowPanel(
        rows: Range<Int>, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        var i = rows.lowerBound
        while i + narrowTileRows <= rows.upperBound {
            narrowTile(rows: 12, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc, ldc: ldc, e)
            i += narrowTileRows
        }
        if i < rows.upperBound { narrowTail(rows: rows.upperBound - i, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc, ldc: ldc, e) }
    }

    /// The last 1 to 11 rows of a narrow panel, out of line.
    @inline(never)
    static func narrowTail(
        rows: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        switch rows {
        case 11: narrowTile(rows: 11, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 10: narrowTile(rows: 10, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 9: narrowTile(rows: 9, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 8: narrowTile(rows: 8, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 7: narrowTile(rows: 7, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 6: narrowTile(rows: 6, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 5: narrowTile(rows: 5, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 4: narrowTile(rows: 4, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 3: narrowTile(rows: 3, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 2: narrowTile(rows: 2, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        case 1: narrowTile(rows: 1, k: k, a: a, lda: lda, panel: panel, c: c, ldc: ldc, e)
        default: preconditionFailure("narrow tail of \(rows) rows")
        }
    }

    /// One narrow tile: `rows` (1...12, a constant where inlined) rows x the first 8 columns of
    /// a panel over the whole `k`, summed in the order of every other tile (the same floats).
    @_transparent
    static func narrowTile(
        rows: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        var sums = NarrowSums()
        // Rows past `rows` are never read.
        let r = (a, a + lda, a + 2 * lda, a + 3 * lda, a + 4 * lda, a + 5 * lda,
                 a + 6 * lda, a + 7 * lda, a + 8 * lda, a + 9 * lda, a + 10 * lda, a + 11 * lda)
        var bp = panel
        for p in 0..<k {
            sums.add(rows: rows, loadVector(bp), r, p)
            bp += 16
        }
        sums.finish(rows: rows, c: c, ldc: ldc, e)
    }

    /// The twelve accumulators of a narrow tile (12 rows x 8 columns), shared by the products'
    /// and the dense convolutions' narrow tiles.
    struct NarrowSums {
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>(), c3 = SIMD8<Float>()
        var c4 = SIMD8<Float>(), c5 = SIMD8<Float>(), c6 = SIMD8<Float>(), c7 = SIMD8<Float>()
        var c8 = SIMD8<Float>(), c9 = SIMD8<Float>(), c10 = SIMD8<Float>(), c11 = SIMD8<Float>()

        /// Row `i` (below `rows`, a constant where inlined) += `a.i[p]` x `b`.
        @_transparent
        mutating func add(
            rows: Int, _ b: SIMD8<Float>,
            _ a: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                  UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                  UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
            _ p: Int
        ) {
            c0.addProduct(SIMD8<Float>(repeating: a.0[p]), b)
            if rows > 1 { c1.addProduct(SIMD8<Float>(repeating: a.1[p]), b) }
            if rows > 2 { c2.addProduct(SIMD8<Float>(repeating: a.2[p]), b) }
            if rows > 3 { c3.addProduct(SIMD8<Float>(repeating: a.3[p]), b) }
            if rows > 4 { c4.addProduct(SIMD8<Float>(repeating: a.4[p]), b) }
            if rows > 5 { c5.addProduct(SIMD8<Float>(repeating: a.5[p]), b) }
            if rows > 6 { c6.addProduct(SIMD8<Float>(repeating: a.6[p]), b) }
            if rows > 7 { c7.addProduct(SIMD8<Float>(repeating: a.7[p]), b) }
            if rows > 8 { c8.addProduct(SIMD8<Float>(repeating: a.8[p]), b) }
            if rows > 9 { c9.addProduct(SIMD8<Float>(repeating: a.9[p]), b) }
            if rows > 10 { c10.addProduct(SIMD8<Float>(repeating: a.10[p]), b) }
            if rows > 11 { c11.addProduct(SIMD8<Float>(repeating: a.11[p]), b) }
        }

        /// The epilogue and store of rows `0 ..< rows`, row `i` at `c + i * ldc`.
        @_transparent
        func finish(rows: Int, c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue) {
            finishNarrow(c0, c, e)
            if rows > 1 { finishNarrow(c1, c + ldc, e) }
            if rows > 2 { finishNarrow(c2, c + 2 * ldc, e) }
            if rows > 3 { finishNarrow(c3, c + 3 * ldc, e) }
            if rows > 4 { finishNarrow(c4, c + 4 * ldc, e) }
            if rows > 5 { finishNarrow(c5, c + 5 * ldc, e) }
            if rows > 6 { finishNarrow(c6, c + 6 * ldc, e) }
            if rows > 7 { finishNarrow(c7, c + 7 * ldc, e) }
            if rows > 8 { finishNarrow(c8, c + 8 * ldc, e) }
            if rows > 9 { finishNarrow(c9, c + 9 * ldc, e) }
            if rows > 10 { finishNarrow(c10, c + 10 * ldc, e) }
            if rows > 11 { finishNarrow(c11, c + 11 * ldc, e) }
        }
    }

    /// Bias, residual, activation and store of one narrow tile row (`e.cols`, 8 or fewer, columns).
    @_transparent  // as @inline(__always) it was left out of line in the 12-row tiles
    static func finishNarrow(_ v: SIMD8<Float>, _ out: UnsafeMutablePointer<Float>, _ e: Epilogue) {
        var v = v + loadVector(e.bias)
        if e.cols == 8 {
            if e.accumulate { v += loadVector(out) }
            activate(&v, e, 0)
            storeVector(v, out)
        } else {
            if e.accumulate { for l in 0..<e.cols { v[l] += out[l] } }
            activate(&v, e, 0)
            for l in 0..<e.cols { out[l] = v[l] }
        }
    }

    /// What one tile's epilogue needs: its panel's bias and slopes, valid columns, accumulation.
    struct Epilogue {
        let bias: UnsafePointer<Float>, slopes: UnsafePointer<Float>
        let cols: Int, accumulate: Bool, kind: PackedEpilogue
    }

    /// One tile of `rows` (1...6, a constant where inlined) rows x 16 columns over the whole `k`.
    @_transparent  // not @inline(__always): past a caller size limit that is not honoured
    static func tile(
        rows: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, _ e: Epilogue
    ) {
        let zero = SIMD8<Float>(repeating: 0)
        var (c0l, c0h, c1l, c1h, c2l, c2h) = (zero, zero, zero, zero, zero, zero)
        var (c3l, c3h, c4l, c4h, c5l, c5h) = (zero, zero, zero, zero, zero, zero)
        // Rows past `rows` are never read.
        let (a0, a1, a2) = (a, a + lda, a + 2 * lda)
        let (a3, a4, a5) = (a + 3 * lda, a + 4 * lda, a + 5 * lda)
        var bp = panel
        for p in 0..<k {
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
        finish(c0l, c0h, c, e)
        if rows > 1 { finish(c1l, c1h, c + ldc, e) }
        if rows > 2 { finish(c2l, c2h, c + 2 * ldc, e) }
        if rows > 3 { finish(c3l, c3h, c + 3 * ldc, e) }
        if rows > 4 { finish(c4l, c4h, c + 4 * ldc, e) }
        if rows > 5 { finish(c5l, c5h, c + 5 * ldc, e) }
    }

    /// Bias, residual, activation and store of one row of a tile (`e.cols` of its 16 columns).
    /// Transparent: inlined always (as `@inline(__always)` it was left out of line in the larger
    /// tiles, a call per row of every tile).
    @_transparent
    static func finish(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>, _ out: UnsafeMutablePointer<Float>, _ e: Epilogue) {
        guard e.cols == 16 else { return finishPartial(lo, hi, out, e) }
        var lo = lo + loadVector(e.bias), hi = hi + loadVector(e.bias + 8)
        if e.accumulate { lo += loadVector(out); hi += loadVector(out + 8) }
        activate(&lo, e, 0)
        activate(&hi, e, 8)
        storeVector(lo, out)
        storeVector(hi, out + 8)
    }

    /// ``finish(_:_:_:_:)`` for the last panel's row when it has fewer than 16 columns (kept out
    /// of line: the full-width path above is the one inlined into every tile).
    @inline(never)
    static func finishPartial(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>, _ out: UnsafeMutablePointer<Float>, _ e: Epilogue) {
        var lo = lo + loadVector(e.bias), hi = hi + loadVector(e.bias + 8)
        if e.accumulate {
            for l in 0..<min(e.cols, 8) { lo[l] += out[l] }
            for l in 8..<max(e.cols, 8) { hi[l - 8] += out[l] }
        }
        activate(&lo, e, 0)
        activate(&hi, e, 8)
        for l in 0..<min(e.cols, 8) { out[l] = lo[l] }
        for l in 8..<max(e.cols, 8) { out[l] = hi[l - 8] }
    }

    /// The epilogue's activation on columns `offset ..< offset + 8` of a tile row.
    @_transparent
    static func activate(_ v: inout SIMD8<Float>, _ e: Epilogue, _ offset: Int) {
        switch e.kind {
        case .identity: break
        // Masked blends, as Elementwise.biasActivation: the same values, NaN included.
        case .relu: v.replace(with: 0, where: v .< 0)
        case .leakyRelu(let slope): v.replace(with: v * slope, where: v .< 0)
        case .prelu: v.replace(with: v * loadVector(e.slopes + offset), where: v .< 0)
        }
    }

    /// The plain loop ``multiply(m:a:lda:b:c:ldc:accumulate:epilogue:)`` must agree with, on the
    /// unpacked `b (k, n)` (row stride `ldb`), accumulating in Double.
    public static func multiplyReference(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        bias: UnsafePointer<Float>?, slopes: UnsafePointer<Float>?,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, epilogue: PackedEpilogue
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[i * lda + p]) * Double(b[p * ldb + j]) }
                var v = Float(sum) + (accumulate ? c[i * ldc + j] : 0) + (bias?[j] ?? 0)
                switch epilogue {
                case .identity: break
                case .relu: if v < 0 { v = 0 }
                case .leakyRelu(let s): if v < 0 { v *= s }
                case .prelu: if v < 0 { v *= slopes![j] }
                }
                c[i * ldc + j] = v
            }
        }
    }
}
