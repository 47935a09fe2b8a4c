import CSpng
import Foundation

/// 8-bit RGB PNG files from ``RGBImage``s, through libspng's encoder (lossless: decoding the file
/// gives the same bytes back). Used for aligned face crops and drawn images.
public enum PNGEncoding {
    /// The PNG file of `image`. Throws ``PNGEncodingError`` with libspng's message when it refuses.
    public static func encode(_ image: RGBImage) throws(PNGEncodingError) -> [UInt8] {
        guard image.width > 0, image.height > 0, image.pixels.count == image.width * image.height * 3 else {
            throw PNGEncodingError("image is \(image.width)x\(image.height) with \(image.pixels.count) bytes")
        }
        guard let ctx = spng_ctx_new(Int32(SPNG_CTX_ENCODER.rawValue)) else { throw PNGEncodingError("libspng: out of memory") }
        defer { spng_ctx_free(ctx) }
        func check(_ status: Int32, _ step: String) throws(PNGEncodingError) {
            guard status == 0 else { throw PNGEncodingError("\(step): \(String(cString: spng_strerror(status)))") }
        }
        try check(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), "encoder option")
        var header = spng_ihdr(width: UInt32(image.width), height: UInt32(image.height), bit_depth: 8,
                               color_type: UInt8(SPNG_COLOR_TYPE_TRUECOLOR.rawValue), compression_method: 0,
                               filter_method: 0, interlace_method: 0)
        try check(spng_set_ihdr(ctx, &header), "header")
        let status = image.pixels.withUnsafeBytes {
            spng_encode_image(ctx, $0.baseAddress, $0.count, Int32(SPNG_FMT_PNG.rawValue), Int32(SPNG_ENCODE_FINALIZE.rawValue))
        }
        try check(status, "encoding")
        var length = 0
        var error: Int32 = 0
        guard let buffer = spng_get_png_buffer(ctx, &length, &error) else {
            throw PNGEncodingError("output: \(String(cString: spng_strerror(error)))")
        }
        defer { free(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: length))
    }
}

/// Why a PNG could not be written.
public struct PNGEncodingError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ message: String) { description = "cannot encode PNG: \(message)" }
}
