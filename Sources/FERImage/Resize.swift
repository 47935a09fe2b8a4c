/// PIL's bilinear resampling of 8-bit images, reproduced to the bit.
///
/// `Image.resize((w, h), Image.BILINEAR)` (what torchvision's `Resize` does to a PIL image) is separable:
/// one pass per axis, each skipped when that side keeps its size, with an 8-bit intermediate image
/// between them; horizontal first unless ``verticalFirst(inWidth:inHeight:outWidth:outHeight:)``.
/// For one axis resized from `inSize` to `outSize`:
///
/// - scale = inSize / outSize; filterscale = max(scale, 1); support = 1 * filterscale (the triangle
///   filter's support, widened when shrinking, which is the antialiasing);
/// - output sample i is centred at (i + 0.5) * scale; it reads input samples `first ..< first + count` with
///   first = max(0, Int(centre - support + 0.5)), end = min(inSize, Int(centre + support + 0.5)) (C's
///   truncating conversion), and weights triangle(((first + k) - centre + 0.5) / filterscale), where
///   triangle(x) = 1 - |x| for |x| < 1, else 0 — all in Double;
/// - the weights are divided by their sum (when non-zero), then made fixed point with 22 fraction bits
///   (32 - 8 - 2), rounding half away from zero;
/// - each output value is `clip(0, 255, (2^21 + sum(sample * weight)) >> 22)` in 32-bit integers.
///
/// Derived from Pillow's documented behaviour and checked value for value against Pillow 13.0.0 on the
/// fixtures (and, locally, on a sweep of 300 random sizes; see Tests/Fixtures/images/README.md).
public enum Resize {
    /// Fraction bits of the fixed-point weights.
    static let precisionBits = 22

    /// Resizes `image` to `width` x `height` exactly as PIL's bilinear `Image.resize`.
    ///
    /// Memory: the result, the intermediate image of the first pass (at most the source's size), and the
    /// fixed-point weights of at most ``tableBudget`` entries at a time, or one output's taps when a single
    /// output reads more inputs than that: resizing a 1 x 89,478,485 image to 112x112 holds one output's
    /// 1.6 million taps (6.4 MB), where a table for all 112 outputs at once took 716 MB.
    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0, "target size \(width)x\(height) is empty")
        if width == image.width && height == image.height { return image }
        if width == image.width { return vertical(image, height: height) }
        if height == image.height { return horizontal(image, width: width) }
        if verticalFirst(inWidth: image.width, inHeight: image.height, outWidth: width, outHeight: height) {
            return horizontal(vertical(image, height: height), width: width)
        }
        // Horizontal first, on only the source rows the vertical pass reads.
        let rows = AxisWeights(inSize: image.height, outSize: height)
        let firstRow = rows.inputs(of: 0).lowerBound
        let endRow = rows.inputs(of: height - 1).upperBound
        let mid = horizontal(image, width: width, rows: firstRow..<endRow)
        return vertical(mid, height: height, weights: rows, rowOffset: firstRow)
    }

    /// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    /// pixels as the width does: `outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth)`.
    /// The order changes the rounding of the 8-bit intermediate image, so it must be the same. (Found by
    /// probing Pillow 13.0.0 on 1,459 size combinations where the two orders differ; every one fits.)
    public static func verticalFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
        outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth)
    }

    /// Most fixed-point weights held at once (256 KiB of Int32): outputs are resampled in blocks whose
    /// weight tables fit, which is one block (the whole axis) for every resize to 112 from up to 32,704
    /// pixels.
    static let tableBudget = 1 << 16

    /// The horizontal pass alone: rows `rows` of `image` resampled to `width` columns.
    static func horizontal(_ image: RGBImage, width: Int, rows: Range<Int>? = nil) -> RGBImage {
        let rows = rows ?? 0..<image.height
        let weights = AxisWeights(inSize: image.width, outSize: width)
        let table = WeightTable(weights, budget: tableBudget)
        var out = [UInt8](repeating: 0, count: rows.count * width * 3)  // (rows, width, 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for block in table.blocks {
                    table.fill(block)
                    resampleRows(src.baseAddress! + rows.lowerBound * image.width * 3, inWidth: image.width,
                                 dst.baseAddress! + block.lowerBound * 3, outStride: width * 3, outputs: block.count,
                                 rows: rows.count, first: table.first, count: table.count, weights: table.weights,
                                 kernelSize: table.kernelSize)
                }
            }
        }
        return RGBImage(width: width, height: rows.count, pixels: out)
    }

    /// The vertical pass alone: `image` resampled to `height` rows. With `weights` (made for the full source
    /// height), `image` holds source rows from `rowOffset` on: the rows the weights read.
    static func vertical(_ image: RGBImage, height: Int, weights: AxisWeights? = nil, rowOffset: Int = 0) -> RGBImage {
        let weights = weights ?? AxisWeights(inSize: image.height, outSize: height)
        let table = WeightTable(weights, budget: tableBudget)
        let rowLength = image.width * 3
        var out = [UInt8](repeating: 0, count: height * rowLength)  // (height, width, 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for block in table.blocks {
                    table.fill(block)
                    resampleColumns(src.baseAddress!, rowOffset: rowOffset, rowLength: rowLength,
                                    dst.baseAddress! + block.lowerBound * rowLength, outHeight: block.count,
                                    first: table.first, count: table.count, weights: table.weights,
                                    kernelSize: table.kernelSize)
                }
            }
        }
        return RGBImage(width: image.width, height: height, pixels: out)
    }

    /// One axis resized from `inSize` to `outSize`: which inputs each output reads, and with what weights.
    struct AxisWeights {
        var inSize: Int, outSize: Int
        var scale: Double, filterscale: Double, support: Double
        /// Most inputs any output reads.
        var kernelSize: Int

        init(inSize: Int, outSize: Int) {
            self.inSize = inSize
            self.outSize = outSize
            scale = Double(inSize) / Double(outSize)
            filterscale = max(scale, 1.0)
            support = 1.0 * filterscale
            kernelSize = Int(support.rounded(.up)) * 2 + 1
        }

        /// The inputs output `i` reads: max(0, Int(centre - support + 0.5)) ..< min(inSize, Int(centre + support + 0.5)).
        func inputs(of i: Int) -> Range<Int> {
            let centre = (Double(i) + 0.5) * scale
            let lo = max(0, Int(centre - support + 0.5))
            let hi = min(inSize, Int(centre + support + 0.5))
            return lo..<max(lo, hi)
        }

        /// Writes output `i`'s fixed-point weights to `weights` (one per input of ``inputs(of:)``): the triangle
        /// filter at each input, divided by their sum (when non-zero), scaled by 2^22 and rounded half away
        /// from zero. The triangle values are computed twice (for the sum, then each weight) rather than
        /// kept, in the same Double arithmetic, so the results are the same to the bit.
        func weights(of i: Int, into weights: UnsafeMutablePointer<Int32>) {
            let centre = (Double(i) + 0.5) * scale
            let span = inputs(of: i)
            let invFilterscale = 1.0 / filterscale
            var total = 0.0
            for j in span { total += triangle((Double(j) - centre + 0.5) * invFilterscale) }
            for (k, j) in span.enumerated() {
                let t = triangle((Double(j) - centre + 0.5) * invFilterscale)
                let w = total != 0 ? t / total : t
                let scaled = w * Double(1 << Resize.precisionBits)
                weights[k] = Int32((scaled < 0 ? -0.5 + scaled : 0.5 + scaled).rounded(.towardZero))
            }
        }

        @inline(__always)
        func triangle(_ x: Double) -> Double {
            let a = x < 0 ? -x : x
            return a < 1 ? 1 - a : 0
        }
    }

    /// The weights of a block of consecutive outputs: output `block.lowerBound + i` reads inputs
    /// `first[i] ..< first[i] + count[i]` with weights `weights[i * kernelSize ..< i * kernelSize + count[i]]`.
    /// Sized once for the largest block (at most `budget` weights, or one output's).
    final class WeightTable {
        let axis: AxisWeights
        let kernelSize: Int
        let blockSize: Int
        let first: UnsafeMutablePointer<Int>
        let count: UnsafeMutablePointer<Int>
        let weights: UnsafeMutablePointer<Int32>

        init(_ axis: AxisWeights, budget: Int) {
            self.axis = axis
            kernelSize = axis.kernelSize
            blockSize = min(axis.outSize, max(1, budget / axis.kernelSize))
            first = .allocate(capacity: blockSize)
            count = .allocate(capacity: blockSize)
            weights = .allocate(capacity: blockSize * kernelSize)
        }

        deinit {
            first.deallocate()
            count.deallocate()
            weights.deallocate()
        }

        /// The blocks covering every output, in order.
        var blocks: [Range<Int>] {
            stride(from: 0, to: axis.outSize, by: blockSize).map { $0..<min(axis.outSize, $0 + blockSize) }
        }

        /// Computes the weights of the outputs in `block` (at most `blockSize` of them).
        func fill(_ block: Range<Int>) {
            precondition(block.count <= blockSize, "block of \(block.count) outputs, table holds \(blockSize)")
            for (i, output) in block.enumerated() {
                let span = axis.inputs(of: output)
                first[i] = span.lowerBound
                count[i] = span.count
                axis.weights(of: output, into: weights + i * kernelSize)
            }
        }
    }

    /// Horizontal pass: `rows` rows of `src` (rows, inWidth, 3) to `outputs` columns of `dst`, whose rows are
    /// `outStride` samples apart; `first`, `count` and `weights` describe those columns (see ``WeightTable``).
    static func resampleRows(_ src: UnsafePointer<UInt8>, inWidth: Int, _ dst: UnsafeMutablePointer<UInt8>,
                             outStride: Int, outputs: Int, rows: Int, first: UnsafePointer<Int>,
                             count: UnsafePointer<Int>, weights: UnsafePointer<Int32>, kernelSize: Int) {
        let half = Int32(1) << Int32(precisionBits - 1)
        for y in 0..<rows {
            let row = src + y * inWidth * 3
            let out = dst + y * outStride
            for x in 0..<outputs {
                let w = weights + x * kernelSize
                let p = row + first[x] * 3
                var r = half, g = half, b = half
                for j in 0..<count[x] {
                    let wj = w[j]
                    r &+= Int32(p[3 * j]) &* wj
                    g &+= Int32(p[3 * j + 1]) &* wj
                    b &+= Int32(p[3 * j + 2]) &* wj
                }
                out[3 * x] = clip8(r)
                out[3 * x + 1] = clip8(g)
                out[3 * x + 2] = clip8(b)
            }
        }
    }

    /// Vertical pass: `src` rows (starting at source row `rowOffset`, each `rowLength` samples) to `dst`
    /// (outHeight, rowLength); each output row accumulates whole input rows, so the inner loop is contiguous.
    static func resampleColumns(_ src: UnsafePointer<UInt8>, rowOffset: Int, rowLength: Int,
                                _ dst: UnsafeMutablePointer<UInt8>, outHeight: Int, first: UnsafePointer<Int>,
                                count: UnsafePointer<Int>, weights: UnsafePointer<Int32>, kernelSize: Int) {
        let half = Int32(1) << Int32(precisionBits - 1)
        let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowLength)
        defer { acc.deallocate() }
        for y in 0..<outHeight {
            acc.initialize(repeating: half, count: rowLength)
            let w = weights + y * kernelSize
            for j in 0..<count[y] {
                let row = src + (first[y] + j - rowOffset) * rowLength
                let wj = w[j]
                for i in 0..<rowLength { acc[i] &+= Int32(row[i]) &* wj }
            }
            let out = dst + y * rowLength
            for i in 0..<rowLength { out[i] = clip8(acc[i]) }
        }
    }

    @inline(__always)
    static func clip8(_ value: Int32) -> UInt8 {
        let v = value >> Int32(precisionBits)
        return v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(truncatingIfNeeded: v))
    }
}
