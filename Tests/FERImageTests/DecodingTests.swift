import FERImage
import XCTest

/// Decoded pixels against PIL's `Image.open(f).convert('RGB')` for every fixture.
final class DecodingTests: XCTestCase {
    func testManifestIsPresent() {
        XCTAssertGreaterThanOrEqual(Fixtures.cases.count, 40,
                                    "Tests/Fixtures/images/manifest.tsv missing or short (run tools/reference/make_image_fixtures.py)")
    }

    func testEveryLocalFixtureDecodesExactlyLikePIL() throws {
        var checked = 0
        for c in Fixtures.cases where !c.isExternal {
            let decoded = try ImageDecoder.decode(path: c.path)
            let image = decoded.image
            XCTAssertEqual(image.width, c.width, c.name)
            XCTAssertEqual(image.height, c.height, c.name)
            if let expected = try Fixtures.expectedPNG("\(c.name).decoded.png") {
                let d = Fixtures.diff(image, expected)
                XCTAssertTrue(d.exact, "\(c.name) (\(decoded.sourceDescription)): \(d)")
            }
            XCTAssertEqual(Fixtures.fnv1a64(image.pixels), c.decodedHash,
                           "\(c.name) (\(decoded.sourceDescription), PIL mode \(c.pilMode)): decoded bytes differ from PIL's")
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 40)
    }

    func testPNGStoredExpectationsAgreeWithNPY() throws {
        // The expectations are stored as RGB PNGs; this cross-checks that reading them is sound.
        let (shape, values) = try Fixtures.readUInt8NPY(Fixtures.root + "/expected/grey2-interlaced-13x11.decoded.npy")
        XCTAssertEqual(shape, [11, 13, 3])
        let png = try XCTUnwrap(try Fixtures.expectedPNG("grey2-interlaced-13x11.decoded.png"))
        XCTAssertEqual(png.pixels, values)
        let decoded = try ImageDecoder.decode(path: Fixtures.root + "/inputs/grey2-interlaced-13x11.png")
        XCTAssertEqual(decoded.image.pixels, values)
    }

    func testSourceDescriptions() throws {
        let expectations = [
            "grey16-40x30": "16-bit grey", "grey4-interlaced-40x30": "4-bit grey, interlaced",
            "palette-trns-40x30": "8-bit palette", "rgba16-interlaced-40x30": "16-bit RGBA, interlaced",
            "greyalpha-40x30": "8-bit grey+alpha", "jpeg-420-75x51": "4:2:0 YCbCr", "jpeg-444-75x51": "4:4:4 YCbCr",
            "jpeg-progressive-61x47": "progressive, 4:2:0 YCbCr", "jpeg-grey-45x33": "grey", "jpeg-cmyk-45x33": "CMYK",
        ]
        for (name, text) in expectations {
            let c = try Fixtures.case(name)
            let decoded = try ImageDecoder.decode(path: c.path)
            XCTAssertEqual(decoded.sourceDescription, text, name)
            XCTAssertEqual(decoded.format, name.hasPrefix("jpeg") ? .jpeg : .png, name)
        }
    }

    func testExtensionMismatchIsANoteAndOptionallyAnError() throws {
        let c = try Fixtures.case("png-named-jpg-20x10")
        let decoded = try ImageDecoder.decode(path: c.path)
        XCTAssertEqual(decoded.format, .png)
        XCTAssertEqual(decoded.notes.first?.kind, .extensionMismatch(fileExtension: "jpg", actual: .png))
        XCTAssertEqual(decoded.notes.first?.description,
                       "\(c.path): note: extension .jpg does not match the content (PNG); decoded as PNG")
        XCTAssertEqual(decoded.notes.count, 2, "also the resize note: \(decoded.notes)")

        XCTAssertThrowsError(try ImageDecoder.decode(path: c.path, options: .init(extensionMismatch: .error))) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .wrongExtension(fileExtension: "jpg", actual: .png))
            XCTAssertEqual("\(error)", "\(c.path): wrong extension: .jpg but the content is PNG")
        }
        let quiet = try ImageDecoder.decode(path: c.path, options: .init(extensionMismatch: .ignore))
        XCTAssertEqual(quiet.notes.map(\.kind), [.resizedToModelInput(width: 20, height: 10)])
    }

    func testResizeNoteAndFlag() throws {
        let small = try ImageDecoder.decode(path: try Fixtures.case("rgb-37x113").path)
        XCTAssertTrue(small.needsResize)
        XCTAssertEqual(small.notes.map(\.message),
                       ["image is 37x113, resized to 112x112; the model expects aligned 112x112 face crops"])
        let exact = try ImageDecoder.decode(path: try Fixtures.case("rgb-112x112").path)
        XCTAssertFalse(exact.needsResize)
        XCTAssertEqual(exact.notes, [])
    }

    func testDecodingFromMemoryNeedsNoPath() throws {
        let c = try Fixtures.case("jpeg-progressive-61x47")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: c.path)))
        XCTAssertEqual(ImageDecoder.detectFormat(bytes), .jpeg)
        let decoded = try ImageDecoder.decode(bytes: bytes)
        XCTAssertEqual(decoded.path, "<memory>")
        XCTAssertEqual(Fixtures.fnv1a64(decoded.image.pixels), c.decodedHash)
    }

    func testSharedAstronautPhoto() throws { try checkExternal("astronaut") }

    func testDownloadedSample() throws { try checkExternal("tom-hanks") }

    /// A photo read from outside the repository: decoded, resized and normalised like PIL + torchvision.
    private func checkExternal(_ name: String) throws {
        let c = try Fixtures.case(name)
        let path = try Fixtures.inputPath(c)
        let decoded = try ImageDecoder.decode(path: path)
        XCTAssertEqual(decoded.image.width, c.width)
        XCTAssertEqual(decoded.image.height, c.height)
        XCTAssertEqual(Fixtures.fnv1a64(decoded.image.pixels), c.decodedHash, "\(name): decoded bytes differ from PIL's")
        let resized = Preprocessing.resizedForModel(decoded.image)
        if let expected = try Fixtures.expectedPNG("\(name).resized.png") {
            let d = Fixtures.diff(resized, expected)
            XCTAssertTrue(d.exact, "\(name): \(d)")
        }
        XCTAssertEqual(Fixtures.fnv1a64(resized.pixels), c.resizedHash, "\(name): resized bytes differ from PIL's")
        XCTAssertEqual(Fixtures.fnv1a64(Preprocessing.modelInput(decoded.image)), c.tensorHash,
                       "\(name): tensor differs from torchvision's")
    }
}
