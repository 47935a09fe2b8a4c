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
        let resized = try LinearResize.resize(image, width: w, height: h)
        var input = [Float](repeating: 0, count: w * h * 3)  // (1, h, w, 3) BGR
        let (mb, mg, mr) = meanBGR
        resized.pixels.withUnsafeBufferPointer { p in
            for i in 0..<(w * h) {
                input[3 * i] = Float(p[3 * i + 2]) - mb
                input[3 * i + 1] = Float(p[3 * i + 1]) - mg
                input[3 * i + 2] = Float(p[3 * i]) - mr
            }
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
