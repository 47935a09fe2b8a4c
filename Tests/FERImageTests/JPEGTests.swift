import FERImage
import XCTest

/// JPEGs that TurboJPEG's API refused or decoded too slowly, from Tests/Fixtures/images/jpeg (made by
/// tools/reference/make_jpeg_fixtures.py with cjpeg; PIL's decoding is the expectation).
final class JPEGTests: XCTestCase {
    static let root = Fixtures.root + "/jpeg"

    /// One row of jpeg/manifest.tsv: name, input, width, height, decoded hash, resized hash.
    struct Case {
        var name: String, path: String, width: Int, height: Int, decodedHash: String, resizedHash: String
    }

    static let cases: [Case] = {
        guard let text = try? String(contentsOfFile: root + "/manifest.tsv", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let f = line.split(separator: "\t").map(String.init)
            return Case(name: f[0], path: root + "/" + f[1], width: Int(f[2])!, height: Int(f[3])!,
                        decodedHash: f[4], resizedHash: f[5])
        }
    }()

    private func path(_ name: String) throws -> String {
        try XCTUnwrap(Self.cases.first { $0.name == name }, "\(name) not in jpeg/manifest.tsv").path
    }

    func testEveryCaseDecodesExactlyLikePIL() throws {
        XCTAssertEqual(Self.cases.count, 14, "jpeg/manifest.tsv missing or short (run tools/reference/make_jpeg_fixtures.py)")
        for c in Self.cases {
            // The 101- and 499-scan files are over the default scan limit; PIL has none.
            let options = c.name.hasSuffix("-scans") ? ImageDecodingOptions(maxJPEGScans: nil) : .default
            let decoded = try ImageDecoder.decode(path: c.path, options: options)
            XCTAssertEqual(decoded.format, .jpeg, c.name)
            XCTAssertEqual(decoded.image.width, c.width, c.name)
            XCTAssertEqual(decoded.image.height, c.height, c.name)
            let expected = try ImageDecoder.decode(path: "\(Self.root)/expected/\(c.name).decoded.png").image
            let d = Fixtures.diff(decoded.image, expected)
            XCTAssertTrue(d.exact, "\(c.name) (\(decoded.sourceDescription)): \(d)")
            XCTAssertEqual(Fixtures.fnv1a64(decoded.image.pixels), c.decodedHash, c.name)
            XCTAssertEqual(Fixtures.fnv1a64(Preprocessing.resizedForModel(decoded.image).pixels), c.resizedHash, c.name)
        }
    }

    func testSamplingDescriptions() throws {
        let expectations = [
            "s2x4": "2x4,1x1,1x1 YCbCr", "s4x2": "4x2,1x1,1x1 YCbCr", "s3x1": "3x1,1x1,1x1 YCbCr",
            "s1x4": "4:4:1 YCbCr", "s2x2-1x2-2x1": "2x2,1x2,2x1 YCbCr", "s1x1-2x2-1x1": "1x1,2x2,1x1 YCbCr",
            "s2x4-progressive": "progressive, 2x4,1x1,1x1 YCbCr",
            "s4x2-arithmetic": "arithmetic-coded, 4x2,1x1,1x1 YCbCr", "grey-s2x2": "grey",
        ]
        for (name, text) in expectations {
            XCTAssertEqual(try ImageDecoder.decode(path: try path(name)).sourceDescription, text, name)
        }
    }

    // MARK: scan limit

    func testAtMostOneHundredScansByDefault() throws {
        XCTAssertEqual(ImageDecodingOptions.default.maxJPEGScans, 100)
        // 100 scans: decoded (like PIL, in testEveryCaseDecodesExactlyLikePIL).
        XCTAssertNoThrow(try ImageDecoder.decode(path: try path("progressive-100-scans")))
        for (name, scans) in [("progressive-101-scans", 101), ("progressive-499-scans", 499)] {
            let file = try path(name)
            XCTAssertThrowsError(try ImageDecoder.decode(path: file)) { error in
                let error = error as? ImageError
                XCTAssertEqual(error?.kind, .limitExceeded(.jpeg, limit: .jpegScans(100),
                                                           detail: "the file has \(scans) scans (SOS markers)"))
                XCTAssertEqual(error?.description, "\(file): JPEG over the decoder's limit of 100 scans "
                               + "(the file has \(scans) scans (SOS markers))")
            }
        }
    }

    func testScanLimitIsAnOption() throws {
        let file = try path("progressive-101-scans")
        let expected = try XCTUnwrap(Self.cases.first { $0.name == "progressive-101-scans" }).decodedHash
        // The repeated scan changes nothing: PIL decodes it to the 100-scan file's pixels, and so does this.
        for options in [ImageDecodingOptions(maxJPEGScans: 101), ImageDecodingOptions(maxJPEGScans: nil)] {
            XCTAssertEqual(Fixtures.fnv1a64(try ImageDecoder.decode(path: file, options: options).image.pixels), expected)
        }
        XCTAssertThrowsError(try ImageDecoder.decode(path: try path("progressive-100-scans"),
                                                     options: ImageDecodingOptions(maxJPEGScans: 99))) { error in
            XCTAssertEqual((error as? ImageError)?.kind,
                           .limitExceeded(.jpeg, limit: .jpegScans(99), detail: "the file has 100 scans (SOS markers)"))
        }
    }

    func testScansAreCountedBeforeDecoding() throws {
        // The 499-scan file claiming 8000x8000 pixels: decoding would allocate 192 MB and then fail on data
        // that ends far too early. The count refuses it first, from the markers alone.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try path("progressive-499-scans"))))
        let sof = try XCTUnwrap((2..<bytes.count - 1).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC2 })
        bytes[sof + 5] = 0x1F; bytes[sof + 6] = 0x40; bytes[sof + 7] = 0x1F; bytes[sof + 8] = 0x40  // 8000 x 8000
        XCTAssertThrowsError(try ImageDecoder.decode(bytes: bytes)) { error in
            XCTAssertEqual((error as? ImageError)?.kind,
                           .limitExceeded(.jpeg, limit: .jpegScans(100), detail: "the file has 499 scans (SOS markers)"))
        }
        // Without the limit the same bytes reach libjpeg, which finds each scan's data short.
        XCTAssertThrowsError(try ImageDecoder.decode(bytes: bytes, options: .init(maxJPEGScans: nil))) { error in
            switch (error as? ImageError)?.kind {
            case .corrupted(.jpeg, let detail)?, .truncated(.jpeg, let detail)?:
                XCTAssertTrue(detail.contains("premature end of data segment"), detail)
            default: XCTFail("\(error)")
            }
        }
    }

    func testScanCountFollowsTheStreamNotTheBytes() throws {
        // FF DA inside an APP segment (as in an embedded Exif thumbnail) and FF DA-like bytes that are not
        // markers are not scans; marker segments are skipped by their lengths, entropy data up to a marker.
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try path("progressive-100-scans"))))
        let app: [UInt8] = [0xFF, 0xE1, 0x01, 0x92] + (0..<200).flatMap { _ in [UInt8(0xFF), 0xDA] }  // length 2 + 400
        let padded = Array(good[0..<2]) + app + Array(good[2...])
        XCTAssertEqual(Fixtures.fnv1a64(try ImageDecoder.decode(bytes: padded).image.pixels),
                       Fixtures.fnv1a64(try ImageDecoder.decode(bytes: good).image.pixels))
    }
}
