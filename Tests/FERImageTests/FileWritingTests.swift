import FERImage
import Foundation
import XCTest

/// Output file names are bytes like input ones: stems, joins, whole-file writes and directories.
final class FileWritingTests: XCTestCase {
    private func temporaryDirectory() throws -> [UInt8] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-write-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return Array(dir.path.utf8)
    }

    func testStemsAndJoins() {
        let cases: [(String, String)] = [("photos/t1.jpg", "t1"), ("t1.jpg", "t1"), ("a/b.c/d", "d"), ("x.tar.gz", "x.tar"),
                                         (".hidden", ".hidden"), ("dir/", "dir"), ("plain", "plain")]
        for (path, stem) in cases { XCTAssertEqual(FileNames.stem(of: Array(path.utf8)), Array(stem.utf8), path) }
        XCTAssertEqual(FileNames.stem(of: [0x62, 0xE9, 0x2E, 0x70, 0x6E, 0x67]), [0x62, 0xE9], "a Latin-1 name keeps its bytes")
        XCTAssertEqual(FileNames.join(Array("out".utf8), Array("a.png".utf8)), Array("out/a.png".utf8))
        XCTAssertEqual(FileNames.join(Array("out/".utf8), Array("a.png".utf8)), Array("out/a.png".utf8))
    }

    func testWritesWholeFilesUnderAnyNameAndMakesDirectories() throws {
        let dir = try temporaryDirectory()
        let nested = FileNames.join(dir, Array("a/b".utf8))
        try FileNames.makeDirectory(nested)
        try FileNames.makeDirectory(nested)  // existing: fine
        let name = FileNames.join(nested, [0x62, 0xE9, 0x2E, 0x70, 0x6E, 0x67])  // "b\xe9.png"
        try FileNames.write(Array("first".utf8), to: name)
        try FileNames.write(Array("second".utf8), to: name)  // replaced whole
        XCTAssertEqual(try ImageDecoder.readFile(pathBytes: name, maxBytes: 100), Array("second".utf8))
        let listing = try FileManager.default.contentsOfDirectory(atPath: String(decoding: nested, as: UTF8.self))
        XCTAssertEqual(listing.count, 1, "no temporary file left: \(listing)")
    }

    func testWriteErrorsNameThePath() throws {
        let dir = try temporaryDirectory()
        let file = FileNames.join(dir, Array("file".utf8))
        try FileNames.write([1], to: file)
        XCTAssertThrowsError(try FileNames.makeDirectory(FileNames.join(file, Array("sub".utf8)))) {
            XCTAssertTrue("\($0)".contains("/file/sub") || "\($0)".contains("/file"), "\($0)")
        }
        XCTAssertThrowsError(try FileNames.makeDirectory(file)) { XCTAssertTrue("\($0)".contains("not a directory"), "\($0)") }
        XCTAssertThrowsError(try FileNames.write([1], to: Array("/no/such/dir/x.png".utf8))) {
            XCTAssertEqual("\($0)", "/no/such/dir/x.png: cannot write: No such file or directory")
        }
    }
}

/// PNG writing is lossless: what is encoded decodes to the same bytes, at any size.
final class PNGEncodingTests: XCTestCase {
    func testEncodedImagesDecodeToTheSameBytes() throws {
        var state: UInt32 = 12345
        for (w, h) in [(1, 1), (112, 112), (37, 5), (3, 200)] {
            let pixels = (0..<w * h * 3).map { _ -> UInt8 in
                state = state &* 1_664_525 &+ 1_013_904_223
                return UInt8(truncatingIfNeeded: state >> 24)
            }
            let image = RGBImage(width: w, height: h, pixels: pixels)
            let png = try PNGEncoding.encode(image)
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            let decoded = try ImageDecoder.decode(bytes: png).image
            XCTAssertEqual([decoded.width, decoded.height], [w, h])
            XCTAssertEqual(decoded.pixels, pixels, "\(w)x\(h)")
        }
    }
}
