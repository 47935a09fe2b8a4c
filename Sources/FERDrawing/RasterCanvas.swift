import CCairo
import FERImage

/// A canvas of opaque RGB pixels (Cairo's RGB24 image surface), made blank or from an ``RGBImage``,
/// written as PNG or read back as an ``RGBImage``.
///
/// Pixels go in and come out unchanged: an image put on a canvas and read back (``image()``) or
/// written (``writePNG(to:)``) and decoded without drawing in between is byte-identical to it.
///
/// ```swift
/// let canvas = try RasterCanvas(image: photo)
/// canvas.strokeRectangle(x: 40, y: 30, width: 120, height: 150, color: DrawingColor(hex: 0x00C853), lineWidth: 3)
/// canvas.drawLabel("happy 0.93", x: 40, y: 12, size: 14, textColor: .white, background: .black)
/// try canvas.writePNG(to: "annotated.png")
/// ```
public final class RasterCanvas: Canvas {
    /// The largest side Cairo's image surfaces take.
    public static let maxSide = 32767

    /// Width in pixels.
    public let pixelWidth: Int
    /// Height in pixels.
    public let pixelHeight: Int

    /// A canvas of `width` x `height` pixels filled with `background` (its alpha is ignored: the
    /// canvas is opaque). Throws ``DrawingError/invalidSize(width:height:)`` unless each side is in
    /// 1...``maxSide``.
    public init(width: Int, height: Int, background: DrawingColor = .white) throws(DrawingError) {
        let surface = try Self.makeSurface(width: width, height: height)
        pixelWidth = width
        pixelHeight = height
        try super.init(surface: surface, width: Double(width), height: Double(height), path: nil)
        cairo_set_source_rgb(context, background.red, background.green, background.blue)
        cairo_paint(context)
    }

    /// A canvas holding a copy of `image`'s pixels.
    public init(image: RGBImage) throws(DrawingError) {
        let surface = try Self.makeSurface(width: image.width, height: image.height)
        pixelWidth = image.width
        pixelHeight = image.height
        try super.init(surface: surface, width: Double(image.width), height: Double(image.height), path: nil)
        cairo_surface_flush(surface)
        let stride = Int(cairo_image_surface_get_stride(surface))
        let base = UnsafeMutableRawPointer(cairo_image_surface_get_data(surface)!)
        image.pixels.withUnsafeBufferPointer { source in
            for y in 0..<pixelHeight {
                // RGB24: one native-endian 32-bit word per pixel, 0xXXRRGGBB (Cairo allocates rows
                // 4-byte aligned).
                let row = (base + y * stride).assumingMemoryBound(to: UInt32.self)
                var i = y * pixelWidth * 3
                for x in 0..<pixelWidth {
                    row[x] = 0xFF00_0000 | UInt32(source[i]) << 16 | UInt32(source[i + 1]) << 8 | UInt32(source[i + 2])
                    i += 3
                }
            }
        }
        cairo_surface_mark_dirty(surface)
    }

    /// The pixels as they are now. Throws when an earlier drawing call failed (Cairo's status).
    public func image() throws(DrawingError) -> RGBImage {
        try checkStatus(operation: "drawing", path: nil)
        cairo_surface_flush(surface)
        let stride = Int(cairo_image_surface_get_stride(surface))
        let base = UnsafeMutableRawPointer(cairo_image_surface_get_data(surface)!)
        var pixels = [UInt8](repeating: 0, count: pixelWidth * pixelHeight * 3)
        pixels.withUnsafeMutableBufferPointer { out in
            for y in 0..<pixelHeight {
                let row = (base + y * stride).assumingMemoryBound(to: UInt32.self)
                var i = y * pixelWidth * 3
                for x in 0..<pixelWidth {
                    let word = row[x]
                    out[i] = UInt8(truncatingIfNeeded: word >> 16)
                    out[i + 1] = UInt8(truncatingIfNeeded: word >> 8)
                    out[i + 2] = UInt8(truncatingIfNeeded: word)
                    i += 3
                }
            }
        }
        return RGBImage(width: pixelWidth, height: pixelHeight, pixels: pixels)
    }

    /// Writes the canvas as an 8-bit RGB PNG file at `path` (created or replaced). Throws
    /// ``DrawingError/cannotWrite(path:reason:)`` when the file cannot be opened or written (no
    /// partial file is left), or ``DrawingError/cairo(operation:path:status:)`` when an earlier
    /// drawing call failed.
    public func writePNG(to path: String) throws(DrawingError) {
        try checkStatus(operation: "drawing", path: path)
        // One PNG writer for the project: the pixels through FERImage's encoder, the file written whole.
        let png: [UInt8]
        do { png = try PNGEncoding.encode(try image()) } catch let error as DrawingError { throw error } catch {
            throw .cairo(operation: "writing PNG", path: path, status: "\(error)")
        }
        do { try FileNames.write(png, to: Array(path.utf8)) } catch { throw .cannotWrite(path: path, reason: error.reason) }
    }

    private static func makeSurface(width: Int, height: Int) throws(DrawingError) -> OpaquePointer {
        guard (1...maxSide).contains(width), (1...maxSide).contains(height) else {
            throw .invalidSize(width: Double(width), height: Double(height))
        }
        return cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(width), Int32(height))!
    }
}
