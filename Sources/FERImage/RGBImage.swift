import FERTensor

/// An 8-bit RGB image: what PIL's `Image.open(f).convert('RGB')` holds.
///
/// Layout: `pixels` is (height, width, 3), row-major, channels interleaved R G B, no row padding,
/// so pixel (x, y) channel c is `pixels[(y * width + x) * 3 + c]`.
public struct RGBImage: Equatable, Sendable {
    /// Width in pixels (at least 1).
    public let width: Int
    /// Height in pixels (at least 1).
    public let height: Int
    /// The samples, (height, width, 3) interleaved, `width * height * 3` of them.
    public private(set) var pixels: [UInt8]

    /// Wraps `pixels` (height, width, 3); the count must be `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "image size \(width)x\(height) is empty")
        precondition(pixels.count == width * height * 3, "\(pixels.count) samples for a \(width)x\(height) RGB image")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The model's input side: the authors' networks take 112x112 aligned face crops.
    public static let modelInputSize = ModelInput.size

    /// True when the image is not already 112x112, so preprocessing resizes it (and the CLI notes
    /// that the model expects aligned 112x112 face crops).
    public var needsResize: Bool {
        width != RGBImage.modelInputSize || height != RGBImage.modelInputSize
    }

    /// The (r, g, b) of pixel (x, y).
    public subscript(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) outside \(width)x\(height)")
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}
