import CZlib
import FERImage
import XCTest

/// A PNG stopped by one of libspng's chunk limits says which limit (libspng itself has one code, "chunk/cache
/// limits", for all three), with the chunk and its byte offset.
final class PNGLimitTests: XCTestCase {
    private func be32(_ v: Int) -> [UInt8] {
        [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        let crc = body.withUnsafeBufferPointer { Int(CZlib.crc32(0, $0.baseAddress, UInt32($0.count))) }
        return be32(data.count) + body + be32(crc)
    }

    private func deflate(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(compressBound(UInt(data.count))))
        var length = UInt(out.count)
        let status = out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { compress2(o.baseAddress, &length, $0.baseAddress, UInt($0.count), 9) }
        }
        XCTAssertEqual(status, Z_OK)
        return Array(out[0..<Int(length)])
    }

    /// A 4x4 grey PNG with `before` chunks between IHDR and IDAT and `after` chunks between IDAT and IEND.
    private func png(before: [[UInt8]] = [], after: [[UInt8]] = []) -> [UInt8] {
        let raw = (0..<4).flatMap { y in [UInt8(0)] + (0..<4).map { UInt8(60 * y + $0) } }
        var bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        bytes += chunk("IHDR", be32(4) + be32(4) + [8, 0, 0, 0, 0])
        for c in before { bytes += c }
        bytes += chunk("IDAT", deflate(raw))
        for c in after { bytes += c }
        return bytes + chunk("IEND", [])
    }

    private func text(_ i: Int) -> [UInt8] { chunk("tEXt", Array("key\0value \(i)".utf8)) }

    private func kind(_ bytes: [UInt8]) -> ImageError.Kind? {
        do {
            _ = try ImageDecoder.decode(bytes: bytes)
            return nil
        } catch { return error.kind }
    }

    /// Offset of the `index`th chunk of `type` (0-based).
    private func offset(of type: String, _ index: Int, in bytes: [UInt8]) -> Int {
        var p = 8, seen = 0
        while true {
            let length = Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
            if String(decoding: bytes[p + 4..<p + 8], as: UTF8.self) == type {
                if seen == index { return p }
                seen += 1
            }
            p += 12 + length
        }
    }

    func testTextAndSPLTChunkCount() throws {
        XCTAssertEqual(PNGLimits.chunkCount, 1000)
        // 1000 are kept; the 1001st, counting tEXt and sPLT together, before or after the image data, is refused.
        XCTAssertNil(kind(png(before: (0..<1000).map(text))))
        let splt = (0..<600).map { chunk("sPLT", Array("p\($0)\0".utf8) + [8, 1, 2, 3, 4, 0, 1]) }
        let mixed = png(before: splt + (0..<401).map(text))
        XCTAssertEqual(kind(mixed), .limitExceeded(.png, limit: .pngChunkCount(1000),
            detail: "the tEXt chunk at byte \(offset(of: "tEXt", 400, in: mixed)) is text or sPLT chunk number 1001"))
        let split = png(before: (0..<500).map(text), after: (500..<1001).map(text))
        XCTAssertThrowsError(try ImageDecoder.decode(bytes: split, path: "many.png")) { error in
            XCTAssertEqual("\(error)", "many.png: PNG over the decoder's limit of 1000 text and sPLT chunks (the tEXt chunk "
                           + "at byte \(self.offset(of: "tEXt", 1000, in: split)) is text or sPLT chunk number 1001)")
        }
    }

    func testOneChunkOverTheSizeLimit() throws {
        XCTAssertEqual(PNGLimits.chunkBytes, 64 << 20)
        let exif = chunk("eXIf", Array("MM\0*".utf8) + [UInt8](repeating: 0, count: PNGLimits.chunkBytes - 3))
        let bytes = png(before: [text(0), exif])
        XCTAssertEqual(kind(bytes), .limitExceeded(.png, limit: .pngChunkBytes(PNGLimits.chunkBytes),
            detail: "the eXIf chunk at byte \(offset(of: "eXIf", 0, in: bytes)) holds \(PNGLimits.chunkBytes + 1) bytes"))
    }

    func testChunksOverTheCacheLimitInAll() throws {
        XCTAssertEqual(PNGLimits.chunkCacheBytes, 64 << 20)
        let half = chunk("tEXt", Array("key\0".utf8) + [UInt8](repeating: 0x61, count: PNGLimits.chunkCacheBytes / 2))
        let bytes = png(before: [half, half])
        let second = offset(of: "tEXt", 1, in: bytes)
        XCTAssertEqual(kind(bytes), .limitExceeded(.png, limit: .pngChunkCacheBytes(PNGLimits.chunkCacheBytes),
            detail: "the ancillary chunks through the tEXt at byte \(second) hold \(PNGLimits.chunkCacheBytes + 8) bytes"))
        // Compressed text that inflates past the limit: only libspng, inflating it, sees that.
        let ztxt = chunk("zTXt", Array("key\0\0".utf8) + deflate([UInt8](repeating: 0x61, count: PNGLimits.chunkCacheBytes + 1)))
        XCTAssertLessThan(ztxt.count, 100_000)
        XCTAssertEqual(kind(png(before: [ztxt])), .limitExceeded(.png, limit: .pngChunkCacheBytes(PNGLimits.chunkCacheBytes),
            detail: "the compressed text or ICC profile chunks (zTXt, iTXt, iCCP) inflate past it"))
    }
}
