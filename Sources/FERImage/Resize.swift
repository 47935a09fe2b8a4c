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
    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0, "target size \(width)x\(height) is empty")
        if width == image.width && height == image.height { return image }
        if width == image.width { return vertical(image, height: height) }
        if height == image.height { return horizontal(image, width: width) }
        if verticalFirst(inWidth: image.width, inHeight: image.height, outWidth: width, outHeight: height) {
            return horizontal(vertical(image, height: height), width: width)
        }
        // Horizontal first, on only the source rows the vertical pass reads.
        let weights = AxisWeights(inSize: image.height, outSize: height)
        let firstRow = weights.first[0]
        let endRow = weights.first[height - 1] + weights.count[height - 1]
        let mid = horizontal(image, width: width, rows: firstRow..<endRow)
        return vertical(mid, height: height, weights: weights, rowOffset: firstRow)
    }

    /// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    /// pixels as the width does: `outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth)`.
    /// The order changes the rounding of the 8-bit intermediate image, so it must be the same. (Found by
    /// probing Pillow 13.0.0 on 1,459 size combinations where the two orders differ; every one fits.)
    public static func verticalFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
        outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth)
    }

    /// The horizontal pass alone: rows `rows` of `image` resampled to `width` columns.
    static func horizontal(_ image: RGBImage, width: Int, rows: Range<Int>? = nil) -> RGBImage {
        let rows = rows ?? 0..<image.height
        let weights = AxisWeights(inSize: image.width, outSize: width)
        var out = [UInt8](repeating: 0, count: rows.count * width * 3)  // (rows, width, 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                weights.withPointers { first, count, w in
                    resampleRows(src.baseAddress! + rows.lowerBound * image.width * 3, inWidth: image.width,
                                 dst.baseAddress!, outWidth: width, rows: rows.count,
                                 first: first, count: count, weights: w, kernelSize: weights.kernelSize)
                }
            }
        }
        return RGBImage(width: width, height: rows.count, pixels: out)
    }

    /// The vertical pass alone: `image` (whose row 0 is source row `rowOffset`) resampled to `height` rows.
    static func vertical(_ image: RGBImage, height: Int, weights: AxisWeights? = nil, rowOffset: Int = 0) -> RGBImage {
        let weights = weights ?? AxisWeights(inSize: image.height, outSize: height)
        var out = [UInt8](repeating: 0, count: height * image.width * 3)  // (height, width, 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                weights.withPointers { first, count, w in
                    resampleColumns(src.baseAddress!, rowOffset: rowOffset, rowLength: image.width * 3,
                                    dst.baseAddress!, outHeight: height, first: first, count: count,
                                    weights: w, kernelSize: weights.kernelSize)
                }
            }
        }
        return RGBImage(width: image.width, height: height, pixels: out)
    }

    /// The fixed-point weights of one axis: output `i` reads inputs `first[i] ..< first[i] + count[i]`
    /// with weights `weights[i * kernelSize ..< i * kernelSize + count[i]]`.
    struct AxisWeights {
        var kernelSize: Int
        var first: [Int]
        var count: [Int]
        var weights: [Int32]

        init(inSize: Int, outSize: Int) {
            let scale = Double(inSize) / Double(outSize)
            let filterscale = max(scale, 1.0)
            let support = 1.0 * filterscale
            kernelSize = Int(support.rounded(.up)) * 2 + 1
            first = [Int](repeating: 0, count: outSize)
            count = [Int](repeating: 0, count: outSize)
            weights = [Int32](repeating: 0, count: outSize * kernelSize)
            let invFilterscale = 1.0 / filterscale
            var k = [Double](repeating: 0, count: kernelSize)
            for i in 0..<outSize {
                let centre = (Double(i) + 0.5) * scale
                let lo = max(0, Int(centre - support + 0.5))
                let hi = min(inSize, Int(centre + support + 0.5))
                let n = hi - lo
                var total = 0.0
                for j in 0..<n {
                    let w = triangle((Double(j + lo) - centre + 0.5) * invFilterscale)
                    k[j] = w
                    total += w
                }
                for j in 0..<n {
                    let w = total != 0 ? k[j] / total : k[j]
                    let scaled = w * Double(1 << Resize.precisionBits)
                    weights[i * kernelSize + j] = Int32((scaled < 0 ? -0.5 + scaled : 0.5 + scaled).rounded(.towardZero))
                }
                first[i] = lo
                count[i] = n
            }
        }

        @inline(__always)
        func triangle(_ x: Double) -> Double {
            let a = x < 0 ? -x : x
            return a < 1 ? 1 - a : 0
        }

        func withPointers<R>(_ body: (UnsafePointer<Int>, UnsafePointer<Int>, UnsafePointer<Int32>) -> R) -> R {
            first.withUnsafeBufferPointer { f in
                count.withUnsafeBufferPointer { c in
                    weights.withUnsafeBufferPointer { w in body(f.baseAddress!, c.baseAddress!, w.baseAddress!) }
                }
            }
        }
    }

    /// Horizontal pass: `rows` rows of `src` (rows, inWidth, 3) to `dst` (rows, outWidth, 3).
    static func resampleRows(_ src: UnsafePointer<UInt8>, inWidth: Int, _ dst: UnsafeMutablePointer<UInt8>,
                             outWidth: Int, rows: Int, first: UnsafePointer<Int>, count: UnsafePointer<Int>,
                             weights: UnsafePointer<Int32>, kernelSize: Int) {
        let half = Int32(1) << Int32(precisionBits - 1)
        for y in 0..<rows {
            let row = src + y * inWidth * 3
            let out = dst + y * outWidth * 3
            for x in 0..<outWidth {
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
