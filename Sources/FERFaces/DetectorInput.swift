import FERImage

/// The RetinaFace input made from an image: shrunk so its long side is at most `maxSide` (never
/// enlarged) with OpenCV's INTER_LINEAR arithmetic (``LinearResize``), in BGR order minus the mean
/// (104, 117, 123), not divided by a std.
public struct DetectorInput: Sendable {
    /// The per-channel mean subtracted from B, G, R.
    public static let meanBGR: (Float, Float, Float) = (104, 117, 123)

    /// (1, height, width, 3) NHWC, channels B G R minus ``meanBGR``, float32.
    public let input: [Float]
    /// The network input's height and width in pixels.
    public let height: Int
    public let width: Int
    /// Network pixels per original pixel along x and y (width / original width, height / original
    /// height): divide network coordinates by these to get original-image coordinates.
    public let scaleX: Double
    public let scaleY: Double

    /// Prepares `image`: s = min(1, maxSide / long side), target (round(w * s), round(h * s)) with
    /// rounding half to even (as Python's `round`), at least 1 pixel.
    /// Throws ``FaceError/invalidArgument(_:)`` when `maxSide` < 1.
    public static func prepare(_ image: RGBImage, maxSide: Int = 640) throws -> DetectorInput {
        guard maxSide >= 1 else { throw FaceError.invalidArgument("maxSide \(maxSide) < 1") }
        let (w, h) = targetSize(width: image.width, height: image.height, maxSide: maxSide)
        let (mb, mg, mr) = meanBGR
        // (1, h, w, 3) BGR, converted from each resized row as it is made (no resized copy).
        let input = [Float](unsafeUninitializedCapacity: w * h * 3) { buffer, initialized in
            let base = buffer.baseAddress!
            LinearResize.forEachRow(image, width: w, height: h) { y, p in
                let o = base + y * w * 3
                for x in 0..<w {
                    o[3 * x] = Float(p[3 * x + 2]) - mb
                    o[3 * x + 1] = Float(p[3 * x + 1]) - mg
                    o[3 * x + 2] = Float(p[3 * x]) - mr
                }
            }
            initialized = w * h * 3
        }
        return DetectorInput(input: input, height: h, width: w,
                             scaleX: Double(w) / Double(image.width), scaleY: Double(h) / Double(image.height))
    }

    /// The (width, height) ``prepare(_:maxSide:)`` resizes to.
    public static func targetSize(width: Int, height: Int, maxSide: Int) -> (width: Int, height: Int) {
        let s = min(1.0, Double(maxSide) / Double(max(width, height)))
        if s >= 1 { return (width, height) }
        let w = max(1, Int((Double(width) * s).rounded(.toNearestOrEven)))
        let h = max(1, Int((Double(height) * s).rounded(.toNearestOrEven)))
        return (w, h)
    }
}
