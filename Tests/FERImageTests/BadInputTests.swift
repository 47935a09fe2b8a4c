import FERImage
import XCTest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every kind of bad input gives its own error, with a one-line message naming the file; nothing
/// partial is returned, nothing crashes or hangs. Broken files are made here from the fixtures.
final class BadInputTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = try Fixtures.scratchDirectory()
    }

    override func tearDownWithError() throws {
        chmod(dir, 0o755)
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func fixtureBytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.case(name).path)))
    }

    private func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = dir + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)), path)
        return path
    }

    /// Decodes `path` expecting an ``ImageError``; returns it (or fails the test).
    private func failure(_ path: String, options: ImageDecodingOptions = .default,
                         file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
        do {
            let decoded = try ImageDecoder.decode(path: path, options: options)
            XCTFail("\(path) decoded (\(decoded.image.width)x\(decoded.image.height)) but should fail", file: file, line: line)
            return nil
        } catch {
            XCTAssertFalse(error.description.contains("\n"), "one line: \(error)", file: file, line: line)
            XCTAssertTrue(error.description.hasPrefix(path + ": "), "names the file: \(error)", file: file, line: line)
            return error
        }
    }

    private func failure(bytes: [UInt8], name: String = "<memory>", ext: String? = nil) -> ImageError? {
        do {
            _ = try ImageDecoder.decode(bytes: bytes, path: name, fileExtension: ext)
            XCTFail("\(name) (\(bytes.count) bytes) decoded but should fail")
            return nil
        } catch { return error }
    }

    // MARK: files

    func testMissingFile() {
        let path = dir + "/nope.png"
        XCTAssertEqual(failure(path)?.kind, .fileNotFound)
        XCTAssertEqual(failure(path)?.description, "\(path): no such file or directory")
        XCTAssertEqual(failure(dir + "/no/such/dir.jpg")?.kind, .fileNotFound)
    }

    func testDirectoryGivenAsFile() {
        XCTAssertEqual(failure(dir)?.kind, .isDirectory)
        XCTAssertTrue(ImageDecoder.isDirectory(dir))
    }

    func testDirectoryListing() throws {
        XCTAssertThrowsError(try ImageDecoder.imageFiles(inDirectory: dir)) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .noImagesInDirectory)
            XCTAssertEqual("\(error)", "\(dir): directory holds no .png or .jpg/.jpeg images")
        }
        _ = write(Array("notes".utf8), "readme.txt")
        _ = write([1], "b.PNG")
        _ = write([1], "a.jpeg")
        _ = write([1], ".hidden.png")
        try FileManager.default.createDirectory(atPath: dir + "/sub.png", withIntermediateDirectories: false)
        XCTAssertEqual(try ImageDecoder.imageFiles(inDirectory: dir), [dir + "/a.jpeg", dir + "/b.PNG"])
        XCTAssertThrowsError(try ImageDecoder.imageFiles(inDirectory: dir + "/missing")) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .fileNotFound)
        }
    }

    func testEmptyFile() {
        let path = write([], "empty.png")
        XCTAssertEqual(failure(path)?.kind, .emptyFile)
        XCTAssertEqual(failure(path)?.description, "\(path): empty file (0 bytes)")
    }

    func testUnreadablePermissions() throws {
        let path = write(try fixtureBytes("rgb-3x2"), "secret.png")
        chmod(path, 0)
        if geteuid() == 0 {
            // root reads any file whatever its mode, so the check cannot fail here.
            throw XCTSkip("running as root, which can read a chmod 000 file; the permission check needs a normal user")
        }
        XCTAssertEqual(failure(path)?.kind, .permissionDenied)
        XCTAssertEqual(failure(path)?.description, "\(path): permission denied (the file cannot be read)")
    }

    func testFIFOIsRefusedWithoutBlocking() {
        let path = dir + "/pipe.png"
        XCTAssertEqual(mkfifo(path, 0o644), 0)
        XCTAssertEqual(failure(path)?.kind, .notARegularFile)
    }

    func testFileSizeLimit() throws {
        let path = write(try fixtureBytes("rgb-3x2"), "x.png")
        XCTAssertEqual(failure(path, options: .init(maxFileBytes: 10))?.kind,
                       .fileTooLarge(bytes: try fixtureBytes("rgb-3x2").count, limit: 10))
    }

    // MARK: not images

    func testTextFileNamedPNG() {
        let path = write(Array("hello, this is not an image\n".utf8), "photo.png")
        XCTAssertEqual(failure(path)?.kind, .notAnImage(looksLike: "text", fileExtension: "png"))
        XCTAssertEqual(failure(path)?.description,
                       "\(path): not a PNG or JPEG image (it looks like text); its .png extension is wrong")
        let other = write(Array("a,b\n1,2\n".utf8), "data.csv")
        XCTAssertEqual(failure(other)?.description, "\(other): not a PNG or JPEG image (it looks like text)")
    }

    func testOtherFormatsAndBinaryGarbage() {
        XCTAssertEqual(failure(bytes: Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0])?.kind,
                       .notAnImage(looksLike: "a GIF image, which is not supported", fileExtension: nil))
        XCTAssertEqual(failure(bytes: Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0], name: "a.gif", ext: "gif")?.description,
                       "a.gif: not a PNG or JPEG image (it looks like a GIF image, which is not supported)")
        XCTAssertEqual(failure(bytes: [0, 1, 2, 0xFE, 5, 6])?.kind,
                       .notAnImage(looksLike: "unknown data starting with bytes 00 01 02 FE", fileExtension: nil))
        var damaged = (try? fixtureBytes("rgb-3x2")) ?? []
        damaged[5] = 0x0D  // the \r\n -> \r\r of a text-mode transfer
        XCTAssertEqual(failure(bytes: damaged)?.kind,
                       .notAnImage(looksLike: "a PNG file with a damaged signature, as after a text-mode transfer",
                                   fileExtension: nil))
    }

    // MARK: PNG

    func testPNGCutAtEveryOffset() throws {
        for name in ["rgb-37x113", "grey4-interlaced-40x30", "palette-trns-40x30"] {
            let good = try fixtureBytes(name)
            var kinds: [String: Int] = [:]
            for cut in 1..<good.count {
                guard let error = failure(bytes: Array(good[0..<cut]), name: "\(name)[..<\(cut)]") else { continue }
                if cut >= 2 {
                    guard case .truncated(.png, _) = error.kind else {
                        XCTFail("\(name) cut at \(cut): \(error)")
                        continue
                    }
                }
                kinds["\(error.kind)".prefix(while: { $0 != "(" }).description, default: 0] += 1
            }
            XCTAssertEqual(kinds["truncated"], good.count - 2, "\(name): \(kinds)")
        }
    }

    func testPNGCutMessage() throws {
        let good = try fixtureBytes("rgb-37x113")
        let path = write(Array(good[0..<good.count / 2]), "half.png")
        let error = try XCTUnwrap(failure(path))
        XCTAssertTrue(error.description.hasPrefix("\(path): truncated PNG file (the file ends while decoding the image data; libspng: "),
                      error.description)
        // Missing only IEND (12 bytes): PIL tolerates this, but the file is cut; refused.
        let noEnd = Array(good.dropLast(12))
        guard case .truncated(.png, let detail)? = failure(bytes: noEnd)?.kind else { return XCTFail("no IEND accepted") }
        XCTAssertTrue(detail.contains("after the image data"), detail)
    }

    /// Offsets of each chunk: (type, start of the length field, data length).
    private func chunks(_ png: [UInt8]) -> [(String, Int, Int)] {
        var out: [(String, Int, Int)] = []
        var p = 8
        while p + 8 <= png.count {
            let length = Int(png[p]) << 24 | Int(png[p + 1]) << 16 | Int(png[p + 2]) << 8 | Int(png[p + 3])
            out.append((String(decoding: png[p + 4..<p + 8], as: UTF8.self), p, length))
            p += 12 + length
        }
        return out
    }

    /// CRC-32 (PNG's, ISO 3309) of a chunk's type and data, to forge chunks with a valid CRC.
    private func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    private func fixCRC(_ png: inout [UInt8], chunkAt p: Int, length: Int) {
        let crc = crc32(png[p + 4..<p + 8 + length])
        for i in 0..<4 { png[p + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i)) }
    }

    func testPNGFlippedBytesAreCorrupted() throws {
        let good = try fixtureBytes("rgb-37x113")
        let idat = try XCTUnwrap(chunks(good).first { $0.0 == "IDAT" })
        for offset in [0, 1, idat.2 / 3, idat.2 / 2, idat.2 - 5, idat.2 - 1] {
            var bad = good
            bad[idat.1 + 8 + offset] ^= 0x5A
            // libspng inflates while it reads, so zlib may object before the chunk's CRC is checked.
            guard case .corrupted(.png, _)? = failure(bytes: bad)?.kind else {
                XCTFail("IDAT byte \(offset) flipped: not reported as corrupted")
                continue
            }
        }
        var crc = good
        crc[idat.1 + 8 + idat.2] ^= 1  // the IDAT's CRC itself
        guard case .corrupted(.png, let detail)? = failure(bytes: crc)?.kind else { return XCTFail("bad CRC accepted") }
        XCTAssertTrue(detail.contains("checksum"), detail)
        // The same damage with a recomputed CRC reaches zlib, which must refuse it too.
        var forged = good
        for i in 0..<16 { forged[idat.1 + 8 + idat.2 / 2 + i] ^= 0xA5 }
        fixCRC(&forged, chunkAt: idat.1, length: idat.2)
        guard case .corrupted(.png, _)? = failure(bytes: forged)?.kind else { return XCTFail("forged IDAT accepted") }
        var header = good
        header[26] = 1  // compression method 1 does not exist
        guard case .corrupted(.png, _)? = failure(bytes: header)?.kind else { return XCTFail("bad IHDR accepted") }
    }

    private func pngHeader(width: UInt32, height: UInt32, bitDepth: UInt8 = 8, colourType: UInt8 = 2) -> [UInt8] {
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8)
        for v in [width, height] { png += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        png += [bitDepth, colourType, 0, 0, 0, 0, 0, 0, 0]
        fixCRC(&png, chunkAt: 8, length: 13)
        // An empty IDAT and IEND, so that only the header is at fault.
        png += [0, 0, 0, 0] + Array("IDAT".utf8) + [0, 0, 0, 0]
        fixCRC(&png, chunkAt: png.count - 12, length: 0)
        png += [0, 0, 0, 0] + Array("IEND".utf8) + [0xAE, 0x42, 0x60, 0x82]
        return png
    }

    func testPNGDecompressionBombRefusedFromTheHeader() throws {
        let path = write(pngHeader(width: 100_000, height: 100_000), "bomb.png")
        XCTAssertEqual(failure(path)?.kind, .tooManyPixels(.png, width: 100_000, height: 100_000, limit: 89_478_485))
        XCTAssertEqual(failure(path)?.description,
                       "\(path): image too large: the PNG header declares 100000x100000 = 10000000000 pixels, over the "
                       + "limit of 89478485 (a possible decompression bomb; raise the pixel limit, --max-pixels, to allow it)")
        // With the limit lifted, the header still cannot be honoured by so small a file: no allocation, no crash.
        guard case .truncated(.png, _)? = failure(path, options: .init(maxPixels: nil))?.kind else {
            return XCTFail("unlimited bomb not refused")
        }
        // The largest header values a u32 holds: no overflow, no crash, with or without a limit.
        let huge = pngHeader(width: .max, height: .max)
        XCTAssertEqual(failure(bytes: huge)?.kind,
                       .tooManyPixels(.png, width: 4_294_967_295, height: 4_294_967_295, limit: 89_478_485))
        XCTAssertTrue(ImageError(path: "p", kind: .tooManyPixels(.png, width: .max, height: .max, limit: 1))
            .message.hasPrefix("image too large"))
        XCTAssertThrowsError(try ImageDecoder.decode(bytes: huge, options: .init(maxPixels: nil)))
        // A real image over a lowered limit; and the same image under a raised one.
        let small = try Fixtures.case("rgb-64x48").path
        XCTAssertEqual(failure(small, options: .init(maxPixels: 3071))?.kind,
                       .tooManyPixels(.png, width: 64, height: 48, limit: 3071))
        XCTAssertNoThrow(try ImageDecoder.decode(path: small, options: .init(maxPixels: 3072)))
        // PIL's limit exactly: 89,478,485 pixels pass the limit check (and then fail as cut short).
        guard case .truncated? = failure(bytes: pngHeader(width: 89_478_485, height: 1))?.kind else {
            return XCTFail("the limit itself must be allowed")
        }
        XCTAssertEqual(failure(bytes: pngHeader(width: 89_478_486, height: 1))?.kind,
                       .tooManyPixels(.png, width: 89_478_486, height: 1, limit: 89_478_485))
    }

    func testPNGZeroSize() {
        let path = write(pngHeader(width: 0, height: 16), "zero.png")
        XCTAssertEqual(failure(path)?.kind, .zeroSize(.png, width: 0, height: 16))
        XCTAssertEqual(failure(path)?.description, "\(path): zero-sized image: the PNG header declares 0x16 pixels")
        XCTAssertEqual(failure(bytes: pngHeader(width: 5, height: 0))?.kind, .zeroSize(.png, width: 5, height: 0))
    }

    // MARK: JPEG

    /// Offset of the first byte of entropy-coded data (after the first SOS segment).
    private func scanStart(_ jpeg: [UInt8]) -> Int {
        var p = 2
        while p + 4 <= jpeg.count {
            let marker = jpeg[p + 1]
            let length = Int(jpeg[p + 2]) << 8 | Int(jpeg[p + 3])
            if marker == 0xDA { return p + 2 + length }
            p += 2 + length
        }
        return jpeg.count
    }

    func testJPEGCutAtManyOffsets() throws {
        for name in ["jpeg-420-75x51", "jpeg-progressive-61x47", "jpeg-grey-45x33", "jpeg-cmyk-45x33"] {
            let good = try fixtureBytes(name)
            let scan = scanStart(good)
            var cuts = Set([2, 3, 4, 20, scan - 1, scan, scan + 1, good.count - 2, good.count - 1])
            for k in stride(from: 1, to: 40, by: 1) { cuts.insert(scan + (good.count - scan) * k / 40) }
            for cut in cuts.sorted() where cut < good.count {
                guard let error = failure(bytes: Array(good[0..<cut]), name: "\(name)[..<\(cut)]") else { continue }
                guard case .truncated(.jpeg, _) = error.kind else {
                    XCTFail("\(name) cut at \(cut) of \(good.count) (scan data from \(scan)): \(error)")
                    continue
                }
            }
        }
    }

    func testJPEGCutMessage() throws {
        let good = try fixtureBytes("jpeg-420-75x51")
        let path = write(Array(good[0..<good.count * 2 / 3]), "cut.jpg")
        let error = try XCTUnwrap(failure(path))
        XCTAssertTrue(error.description.hasPrefix("\(path): truncated JPEG file ("), error.description)
        XCTAssertTrue(error.description.contains("Premature end of JPEG file"), error.description)
    }

    func testJPEGDamagedScanDataIsAnError() throws {
        // JPEG has no checksum: flipped entropy-coded bits can decode to other valid codes. Damage that
        // libjpeg notices (a stray marker, a run of invalid codes) must be an error, never a silent image.
        for name in ["jpeg-420-75x51", "jpeg-progressive-61x47", "jpeg-big-130x90"] {
            let good = try fixtureBytes(name)
            let scan = scanStart(good)
            for fraction in [4, 2] {
                let at = scan + (good.count - scan) / fraction
                var marker = good
                marker[at] = 0xFF; marker[at + 1] = 0xD9  // an early end-of-image inside the scan
                var garbage = good
                for i in 0..<24 { garbage[at + i] = 0xFF; garbage[at + i + 1] = UInt8(0xC0 + i % 3) } // marker soup
                for (what, bytes) in [("EOI in scan", marker), ("stray markers", garbage)] {
                    guard let error = failure(bytes: bytes, name: "\(name) \(what)") else { continue }
                    switch error.kind {
                    case .corrupted(.jpeg, _), .truncated(.jpeg, _): break
                    default: XCTFail("\(name) \(what): \(error)")
                    }
                }
            }
        }
    }

    func testJPEGBadHeaderValues() throws {
        let good = try fixtureBytes("jpeg-444-75x51")
        // SOF0: FF C0, length, precision, height (2), width (2)
        let sof = try XCTUnwrap((0..<good.count - 1).first { good[$0] == 0xFF && good[$0 + 1] == 0xC0 })
        var zero = good
        zero[sof + 7] = 0; zero[sof + 8] = 0
        let path = write(zero, "zero.jpg")
        XCTAssertEqual(failure(path)?.kind, .zeroSize(.jpeg, width: 0, height: 51))
        var big = good
        big[sof + 5] = 0xFF; big[sof + 6] = 0xFF; big[sof + 7] = 0xFF; big[sof + 8] = 0xFF
        XCTAssertEqual(failure(bytes: big)?.kind, .tooManyPixels(.jpeg, width: 65535, height: 65535, limit: 89_478_485))
        var twelve = good
        twelve[sof + 4] = 12
        guard case .unsupported(.jpeg, _)? = failure(bytes: twelve)?.kind else { return XCTFail("12-bit accepted") }
        // A JPEG whose header is cut before the frame header.
        guard case .truncated(.jpeg, _)? = failure(bytes: Array(good[0..<sof + 4]))?.kind else {
            return XCTFail("cut SOF accepted")
        }
    }

    func testErrorsAreEquatableAndDescribeThemselves() {
        let a = ImageError(path: "x.jpg", kind: .truncated(.jpeg, detail: "d"))
        XCTAssertEqual(a, ImageError(path: "x.jpg", kind: .truncated(.jpeg, detail: "d")))
        XCTAssertEqual(a.description, "x.jpg: truncated JPEG file (d)")
        XCTAssertEqual(ImageError(path: "y.png", kind: .corrupted(.png, detail: "e")).message, "corrupted PNG data (e)")
    }
}
