import FERImage

/// OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)` on 8-bit images, to the bit.
///
/// Unlike PIL's bilinear (``FERImage/Resize``), OpenCV does not widen the filter when shrinking: each
/// output reads two inputs per axis. Its fixed-point arithmetic for 8-bit images, established by
/// comparing outputs with opencv-python 5.0.0 (exact on every size tried, shrinking and enlarging;
/// see tools/reference/make_face_fixtures.py):
///
/// - per axis, scale = 1 / (outSize / inSize) (Double); output i is centred at
///   f = Float((i + 0.5) * scale - 0.5); s = floor(f) (Float), a = f - s (Float);
///   the taps are clamp(s, 0, inSize - 1) and clamp(s + 1, 0, inSize - 1), the fraction is NOT reset at
///   the borders; weights w0 = rint((1 - a) * 2048) (half to even, Float), w1 = 2048 - w0;
/// - horizontal pass: S = p[s] * w0 + p[s + 1] * w1 in integers (11 fraction bits, kept unrounded);
/// - vertical pass: out = ((v0 * (S0 >> 4)) >> 16 + (v1 * (S1 >> 4)) >> 16 + 2) >> 2, clamped to 0...255,
///   with v0, v1 the vertical weights and S0, S1 the horizontal sums of the two source rows.
public enum LinearResize {
    /// Fraction bits of OpenCV's resize coefficients.
    static let coefficientBits = 11

    /// The two taps and weights of every output along one axis.
    struct Axis {
        var first: [Int], second: [Int]    // (outSize) source indices
        var w0: [Int32], w1: [Int32]       // (outSize) weights, w0 + w1 == 2048

        init(inSize: Int, outSize: Int) {
            let scale = 1.0 / (Double(outSize) / Double(inSize))
            let one = Int32(1) << Int32(LinearResize.coefficientBits)
            first = []; second = []; w0 = []; w1 = []
            first.reserveCapacity(outSize); second.reserveCapacity(outSize)
            w0.reserveCapacity(outSize); w1.reserveCapacity(outSize)
            for i in 0..<outSize {
                let f = Float((Double(i) + 0.5) * scale - 0.5)
                let s = f.rounded(.down)
                let a = f - s
                let si = Int(s)
                first.append(min(max(si, 0), inSize - 1))
                second.append(min(max(si + 1, 0), inSize - 1))
                let c0 = Int32(((1 - a) * Float(one)).rounded(.toNearestOrEven))
                w0.append(c0)
                w1.append(one - c0)
            }
        }
    }

    /// `image` resized to `width` x `height` as `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`.
    /// Throws ``FaceError/invalidArgument(_:)`` for a non-positive size.
    public static func resize(_ image: RGBImage, width: Int, height: Int) throws -> RGBImage {
        guard width > 0, height > 0 else { throw FaceError.invalidArgument("target size \(width)x\(height)") }
        if width == image.width && height == image.height { return image }
        let line = width * 3
        let out = [UInt8](unsafeUninitializedCapacity: height * line) { buffer, initialized in
            forEachRow(image, width: width, height: height) { y, row in
                (buffer.baseAddress! + y * line).initialize(from: row, count: line)
            }
            initialized = height * line
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// Resizes `image` to `width` x `height` (both positive) a row at a time, as ``resize(_:width:height:)``:
    /// `body(y, row)` receives output row `y` (`width * 3` bytes, valid during the call), rows in
    /// order, so a caller can convert each row where it needs it without a resized copy. At the
    /// image's own size the rows are its own.
    public static func forEachRow(_ image: RGBImage, width: Int, height: Int, _ body: (Int, UnsafePointer<UInt8>) -> Void) {
        precondition(width > 0 && height > 0, "target size \(width)x\(height)")
        image.pixels.withUnsafeBufferPointer { src in
            let src = src.baseAddress!
            if width == image.width && height == image.height {
                for y in 0..<height { body(y, src + y * width * 3) }
                return
            }
            let xs = Axis(inSize: image.width, outSize: width)
            let ys = Axis(inSize: image.height, outSize: height)
            let line = width * 3
            // Horizontal sums of two source rows (`line` each) and which source rows they hold;
            // the output row.
            let sums = UnsafeMutablePointer<Int32>.allocate(capacity: 2 * line)
            let row = UnsafeMutablePointer<UInt8>.allocate(capacity: line)
            defer { sums.deallocate(); row.deallocate() }
            var (a, b) = (sums, sums + line)
            var heldA = -1, heldB = -1
            xs.first.withUnsafeBufferPointer { first in
            xs.second.withUnsafeBufferPointer { second in
            xs.w0.withUnsafeBufferPointer { w0 in
            xs.w1.withUnsafeBufferPointer { w1 in
                let (first, second, w0, w1) = (first.baseAddress!, second.baseAddress!, w0.baseAddress!, w1.baseAddress!)
                func horizontal(_ y: Int, into sum: UnsafeMutablePointer<Int32>) {
                    let source = src + y * image.width * 3
                    for x in 0..<width {
                        let p = source + first[x] * 3, q = source + second[x] * 3
                        let c0 = w0[x], c1 = w1[x]
                        sum[x * 3] = Int32(p[0]) &* c0 &+ Int32(q[0]) &* c1
                        sum[x * 3 + 1] = Int32(p[1]) &* c0 &+ Int32(q[1]) &* c1
                        sum[x * 3 + 2] = Int32(p[2]) &* c0 &+ Int32(q[2]) &* c1
                    }
                }
                for y in 0..<height {
                    let s0 = ys.first[y], s1 = ys.second[y]
                    if heldA != s0 {
                        if heldB == s0 { swap(&a, &b); swap(&heldA, &heldB) } else { horizontal(s0, into: a); heldA = s0 }
                    }
                    if heldB != s1 { horizontal(s1, into: b); heldB = s1 }
                    let v0 = ys.w0[y], v1 = ys.w1[y]
                    for i in 0..<line {
                        let t = ((v0 &* (a[i] >> 4)) >> 16) &+ ((v1 &* (b[i] >> 4)) >> 16) &+ 2
                        row[i] = UInt8(clamping: t >> 2)
                    }
                    body(y, row)
                }
            }
            }
            }
            }
        }
    }
}
