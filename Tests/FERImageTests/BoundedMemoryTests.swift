import CZlib
import FERImage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// An accepted image costs its 8-bit RGB size (3 bytes a pixel) plus a few rows, decoding and resizing
/// included. The PNGs are made here (zlib-compressed, so a few kilobytes) at 2,000,000 pixels, the shapes
/// of the decompression bombs in the issue (89,478,485 x 1 and 1 x 89,478,485 16-bit RGBA) at a size that
/// keeps the tests fast. Peak memory is the kernel's resident high-water mark (VmHWM), reset before each
/// measurement through /proc/self/clear_refs, so this runs on Linux only.
final class BoundedMemoryTests: XCTestCase {
    static let pixels = 2_000_000
    static let mib = 1 << 20

    // MARK: measuring

    /// Resident bytes from /proc/self/status: ("VmRSS", "VmHWM").
    private func statusBytes(_ field: String) throws -> Int {
        let text = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw XCTSkip("/proc/self/status has no \(field)")
        }
        return kb * 1024
    }

    /// Runs `body` and returns its result with the most memory resident at any time during it, in bytes
    /// above what was resident when it started (what it keeps, its result, included).
    private func peakGrowth<T>(_ body: () throws -> T) throws -> (T, Int) {
        guard FileManager.default.fileExists(atPath: "/proc/self/clear_refs") else {
            throw XCTSkip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
        }
        // Free heap pages go back to the system first, so that the decoder cannot reuse memory that
        // earlier tests left resident and hide its cost.
        if let trim = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {  // glibc's malloc_trim(0)
            _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0, "opening /proc/self/clear_refs: \(String(cString: strerror(errno)))")
        XCTAssertEqual(write(fd, "5", 1), 1, "writing 5 to /proc/self/clear_refs (resets VmHWM, Linux 4.0+)")
        close(fd)
        let start = try statusBytes("VmRSS")
        XCTAssertLessThanOrEqual(try statusBytes("VmHWM"), start + Self.mib, "VmHWM was not reset")
        let result = try body()
        let growth = try statusBytes("VmHWM") - start
        return (result, growth)
    }

    // MARK: making PNGs

    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, UInt32($0.count))) }
    }

    private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        let n = UInt32(data.count), crc = crc32(body)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
            + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
    }

    /// `prefix` then `period` repeated `times` times, built by doubling copies (fast even unoptimised).
    private func repeated(_ period: [UInt8], times: Int, after prefix: [UInt8] = []) -> [UInt8] {
        let total = prefix.count + period.count * times
        return [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
            let base = out.baseAddress!
            prefix.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: prefix.count) }
            let body = base + prefix.count
            var filled = min(period.count, total - prefix.count)
            period.withUnsafeBufferPointer { body.update(from: $0.baseAddress!, count: filled) }
            while filled < period.count * times {
                let n = min(filled, period.count * times - filled)
                (body + filled).update(from: body, count: n)
                filled += n
            }
            initialized = total
        }
    }

    /// A 16-bit RGBA PNG (8 bytes a pixel as stored) with the given scanlines (filter bytes included),
    /// compressed into IDAT chunks of 8 KiB.
    private func rgba16PNG(width: Int, height: Int, scanlines raw: [UInt8]) throws -> [UInt8] {
        XCTAssertEqual(raw.count, (1 + 8 * width) * height)
        var compressed = [UInt8](repeating: 0, count: Int(compressBound(UInt(raw.count))))
        var length = UInt(compressed.count)
        let status = compressed.withUnsafeMutableBufferPointer { out in
            raw.withUnsafeBufferPointer { compress2(out.baseAddress, &length, $0.baseAddress, UInt($0.count), 9) }
        }
        XCTAssertEqual(status, Z_OK)
        func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be(width) + be(height) + [16, 6, 0, 0, 0])
            + stride(from: 0, to: Int(length), by: 1 << 13).flatMap {  // 8 KiB IDATs, as libpng writes them
                chunk("IDAT", Array(compressed[$0..<min(Int(length), $0 + (1 << 13))]))
            }
            + chunk("IEND", [])
    }

    /// True when every byte of `bytes` is `value`.
    private func all(_ bytes: [UInt8], _ value: UInt8) -> Bool {
        let expected = [UInt8](repeating: value, count: bytes.count)
        return bytes.withUnsafeBytes { a in expected.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }

    // MARK: PNG

    func testTallPNGCostsItsRGBSize() throws {
        let n = Self.pixels
        // Every sample 0x1234, so every RGB value is 0x12; filter None.
        let scanline: [UInt8] = [0, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34]
        let png = try rgba16PNG(width: 1, height: n, scanlines: repeated(scanline, times: n))
        XCTAssertLessThan(png.count, 64 * 1024)
        let ((decoded, resized), growth) = try peakGrowth { () throws -> (RGBImage, RGBImage) in
            let d = try ImageDecoder.decode(bytes: png).image
            return (d, Preprocessing.resizedForModel(d))
        }
        XCTAssertEqual(decoded.width, 1)
        XCTAssertEqual(decoded.height, n)
        XCTAssertTrue(all(decoded.pixels, 0x12))
        XCTAssertEqual(resized.pixels.count, 112 * 112 * 3)
        XCTAssertTrue(all(resized.pixels, 0x12))
        // Decoded whole, the stored samples alone were 8 bytes a pixel; the resize's weight table for all
        // 112 outputs 2 * 17,858 taps each, 16 MB.
        XCTAssertLessThan(growth, 3 * n + 2 * Self.mib, "peak grew by \(growth) bytes for \(n) pixels")
    }

    func testAPNGRowWiderThanTheRowLimitIsRefusedBeforeDecoding() throws {
        // One pixel past 16 MiB a row (8 bytes a pixel): the 89,478,485 x 1 bomb's kind, refused.
        let n = PNGLimits.rowBytes / 8 + 1
        let png = try rgba16PNG(width: n, height: 1, scanlines: repeated([0x12, 0x34], times: 4 * n, after: [0]))
        let (error, growth) = try peakGrowth { () -> ImageError? in
            do { _ = try ImageDecoder.decode(bytes: png) } catch let error as ImageError { return error }
            return nil
        }
        XCTAssertEqual(error?.kind, ImageError.Kind.limitExceeded(
            .png, limit: .pngRowBytes(1 << 24), detail: "a row of \(n) pixels of 4 16-bit samples is \(8 * n) bytes"))
        XCTAssertLessThan(growth, 2 * Self.mib, "peak grew by \(growth) bytes")
    }

    func testWidePNGCostsItsRGBSizePlusOneStoredRow() throws {
        let n = Self.pixels
        let png = try rgba16PNG(width: n, height: 1, scanlines: repeated([0x12, 0x34], times: 4 * n, after: [0]))
        XCTAssertLessThan(png.count, 64 * 1024)
        let (decoded, growth) = try peakGrowth { try ImageDecoder.decode(bytes: png).image }
        XCTAssertEqual(decoded.width, n)
        XCTAssertEqual(decoded.height, 1)
        XCTAssertTrue(all(decoded.pixels, 0x12))
        // libspng holds the row as stored (8 bytes a pixel); decoded whole, the samples were a second copy.
        XCTAssertLessThan(growth, 3 * n + 8 * n + 2 * Self.mib, "peak grew by \(growth) bytes for \(n) pixels")
    }

    func testCutPNGCostsOnlyWhatWasDecoded() throws {
        // 2,000 random rows over and over (18,000 bytes, inside zlib's window, so the file stays small but
        // is no 1000:1 bomb, which the header check would refuse before decoding).
        let n = Self.pixels
        var seed: UInt32 = 12345
        let period: [UInt8] = (0..<2000).flatMap { _ in
            [0] + (0..<8).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return UInt8(seed >> 24) }
        }
        let png = try rgba16PNG(width: 1, height: n, scanlines: repeated(period, times: n / 2000))
        let idat = 8 + 25  // after the signature and IHDR
        let cut = Array(png[0..<idat + (png.count - idat) / 4])
        let (error, growth) = try peakGrowth { () -> ImageError? in
            do { _ = try ImageDecoder.decode(bytes: cut) } catch let error as ImageError { return error }
            return nil
        }
        guard case .truncated(.png, let detail)? = error?.kind else { return XCTFail("cut PNG: \(String(describing: error))") }
        XCTAssertTrue(detail.contains("while decoding the image data"), detail)
        // About a quarter of the rows arrive before the data ends; the result's other pages are never touched.
        XCTAssertLessThan(growth, 3 * n / 2, "peak grew by \(growth) bytes for a quarter of \(n) pixels")
    }

    // MARK: JPEG

    /// Decodes a flat JPEG of jpeg/large.tsv and checks every pixel against PIL's one value; returns the
    /// pixel count and the peak growth.
    private func decodeLargeJPEG(_ name: String) throws -> (Int, Int) {
        let root = Fixtures.root + "/jpeg"
        let text = try String(contentsOfFile: root + "/large.tsv", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(name + "\t") }, "\(name) in large.tsv")
        let f = line.split(separator: "\t").map(String.init)
        let (width, height) = (Int(f[2])!, Int(f[3])!)
        let rgb = f[4...6].map { UInt8($0)! }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/" + f[1])))
        let (image, growth) = try peakGrowth { try ImageDecoder.decode(bytes: bytes).image }
        XCTAssertEqual(image.width, width)
        XCTAssertEqual(image.height, height)
        XCTAssertTrue(image.pixels == repeated(rgb, times: width * height), "\(name): not PIL's \(rgb) everywhere")
        return (width * height, growth)
    }

    func testCMYKJPEGCostsItsRGBSize() throws {
        // Decoded whole (TurboJPEG), the CMYK samples were a second image of 4 bytes a pixel.
        let (n, growth) = try decodeLargeJPEG("large-cmyk-2048x1024")
        XCTAssertLessThan(growth, 3 * n + 2 * Self.mib, "peak grew by \(growth) bytes for \(n) pixels")
    }

    func testGreyJPEGCostsItsRGBSize() throws {
        // Decoded whole (TurboJPEG), the grey samples were a second image of 1 byte a pixel.
        let (n, growth) = try decodeLargeJPEG("large-grey-4096x2048")
        XCTAssertLessThan(growth, 3 * n + 2 * Self.mib, "peak grew by \(growth) bytes for \(n) pixels")
    }
}
