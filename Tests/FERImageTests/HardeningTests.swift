import FERImage
import XCTest

/// Issue 25's decoder promises: photos read as OpenCV reads them, the progressive-JPEG coefficient
/// buffer within its budget, buffers checked against what the process may allocate, pixel limits on
/// both sides of the line, names shown without control characters.
final class HardeningTests: XCTestCase {
    private func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.case(name).path)))
    }

    /// The SOF0/SOF2 segment's offset (FF Cn).
    private func sof(_ jpeg: [UInt8]) throws -> Int {
        try XCTUnwrap((2..<jpeg.count - 1).first { jpeg[$0] == 0xFF && (jpeg[$0 + 1] == 0xC0 || jpeg[$0 + 1] == 0xC2) })
    }

    private func kind(_ bytes: [UInt8], _ options: ImageDecodingOptions) -> ImageError.Kind? {
        do {
            _ = try ImageDecoder.decode(bytes: bytes, options: options)
            return nil
        } catch { return error.kind }
    }

    // MARK: OpenCV's reading (photos)

    /// Every committed PNG fixture read with `.opencv` gives cv2.imread's pixels
    /// (tools/reference/make_opencv_reading_fixtures.py); 16-bit grey is the one where PIL differs.
    func testOpenCVReadingMatchesCV2ImreadOnEveryPNG() throws {
        let text = try String(contentsOfFile: Fixtures.root + "/opencv-reading.tsv", encoding: .utf8)
        var checked = 0, differing: [String] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: "\t").map(String.init)
            let c = try Fixtures.case(f[0])
            let opencv = try ImageDecoder.decode(path: c.path, options: .init(reading: .opencv))
            XCTAssertEqual(Fixtures.fnv1a64(opencv.image.pixels), f[1], "\(c.name): not cv2.imread's pixels")
            let pil = try ImageDecoder.decode(path: c.path)
            XCTAssertEqual(pil.readingMatters, f[2] == "no", c.name)
            XCTAssertEqual(opencv.image.pixels == pil.image.pixels, f[2] == "yes", c.name)
            if f[2] == "no" { differing.append(c.name) }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 30)
        XCTAssertEqual(differing, ["grey16-40x30", "grey16-small-40x30"])
        XCTAssertEqual(ImageDecodingOptions(maxPixels: 7).forPhotos, ImageDecodingOptions(maxPixels: 7, reading: .opencv))
    }

    // MARK: The coefficient buffer

    /// The 61x47 4:2:0 progressive fixture needs 9216 bytes of coefficients (Y 8x6 blocks, Cb and Cr 4x3,
    /// 128 bytes a block): a budget of exactly that decodes it, one byte less refuses it with the numbers.
    func testCoefficientBudgetOnBothSidesOfTheLine() throws {
        let progressive = try bytes("jpeg-progressive-61x47")
        XCTAssertNil(kind(progressive, .init(maxJPEGCoefficientBytes: 9216)))
        guard case .limitExceeded(.jpeg, .jpegCoefficientBytes(9215), let detail)? = kind(progressive, .init(maxJPEGCoefficientBytes: 9215)) else {
            return XCTFail("9215 bytes accepted")
        }
        XCTAssertTrue(detail.contains("a progressive 61x47 image with 3 components needs 9216 bytes of coefficients"), detail)
        // A sequential file has no such buffer: any budget passes it.
        XCTAssertNil(kind(try bytes("jpeg-420-75x51"), .init(maxJPEGCoefficientBytes: 0)))
    }

    /// The issue's bomb: a progressive 4:4:4 header of 9450x9450 (within PIL's pixel limit) asks for
    /// 536,495,616 bytes of coefficients (1182 x 1182 blocks of 128 bytes per component); refused by
    /// default before libjpeg allocates anything.
    func testProgressiveBombIsRefusedByDefault() throws {
        var bomb = try bytes("jpeg-progressive-61x47")
        let at = try sof(bomb)
        bomb[at + 5] = 0x24; bomb[at + 6] = 0xEA; bomb[at + 7] = 0x24; bomb[at + 8] = 0xEA  // 9450 x 9450
        bomb[at + 11] = 0x11  // luma sampled 1x1 like the chroma: 4:4:4
        guard case .limitExceeded(.jpeg, .jpegCoefficientBytes(1 << 28), let detail)? = kind(bomb, .default) else {
            return XCTFail("the bomb was not refused by its coefficient buffer: \(String(describing: kind(bomb, .default)))")
        }
        XCTAssertTrue(detail.contains("needs 536495616 bytes of coefficients"), detail)
        XCTAssertEqual(ImageDecodingOptions.default.maxJPEGCoefficientBytes, 256 << 20)
    }

    // MARK: Pixel limits

    func testJPEGPixelLimitOnBothSidesOfTheLine() throws {
        let jpeg = try bytes("jpeg-444-75x51")  // 3825 pixels
        XCTAssertNil(kind(jpeg, .init(maxPixels: 3825)))
        XCTAssertEqual(kind(jpeg, .init(maxPixels: 3824)), .tooManyPixels(.jpeg, width: 75, height: 51, limit: 3824))
        let png = try bytes("rgb-64x48")  // 3072 pixels
        XCTAssertNil(kind(png, .init(maxPixels: 3072)))
        XCTAssertEqual(kind(png, .init(maxPixels: 3071)), .tooManyPixels(.png, width: 64, height: 48, limit: 3071))
        XCTAssertTrue(ImageError(path: "p", kind: .tooManyPixels(.png, width: 64, height: 48, limit: 3071)).message
            .hasSuffix("(a possible decompression bomb; raise the pixel limit, --max-pixels, to allow it)"))
    }

    // MARK: What the process may allocate

    func testHeadroomIsPositiveAndBoundedByMemory() {
        let room = MemoryHeadroom.bytes()
        XCTAssertGreaterThan(room, 1 << 26, "this test process may allocate at least 64 MiB more")
        #if os(Linux)
        XCTAssertLessThan(room, Int.max, "RAM plus swap bounds it on Linux")
        XCTAssertNil(MemoryHeadroom.shortfall(needing: 1 << 20))
        XCTAssertEqual(MemoryHeadroom.shortfall(needing: Int.max).map { $0 < Int.max }, true)
        #endif
    }

    func testNotEnoughMemoryMessageNamesTheNumbers() {
        let e = ImageError(path: "huge.jpg", kind: .notEnoughMemory(.jpeg, needed: 12_884_508_675, available: 1_000_000,
                                                                    what: "the 65535x65535 RGB pixels"))
        XCTAssertEqual(e.description, "huge.jpg: not enough memory to decode this JPEG: the 65535x65535 RGB pixels need "
                       + "12884508675 bytes, but the process may allocate only 1000000 more (its address-space, data or "
                       + "cgroup limit, or RAM plus swap)")
    }

    // MARK: Names

    func testNamesAreShownWithoutControlCharacters() {
        XCTAssertEqual(FileNames.display(Array("plain é.png".utf8)), "plain é.png")
        XCTAssertEqual(FileNames.display(Array("a\nb.png".utf8)), "a\\x0ab.png")
        XCTAssertEqual(FileNames.display(Array("tab\there\r.png".utf8)), "tab\\x09here\\x0d.png")
        XCTAssertEqual(FileNames.display(Array("\u{1B}[31mred.png".utf8)), "\\x1b[31mred.png")
        XCTAssertEqual(FileNames.display(Array("del\u{7F}.png".utf8)), "del\\x7f.png")
        XCTAssertEqual(FileNames.display(Array("csi\u{9B}.png".utf8)), "csi\\u{9b}.png")
        XCTAssertEqual(FileNames.display([0x62, 0xFF, 0x0A]), "b\\xff\\x0a")
        XCTAssertEqual(FileNames.display("x\ny"), "x\\x0ay")
        XCTAssertEqual(FileNames.display("fine"), "fine")
    }

    func testANameWithANULByteIsRefused() {
        XCTAssertThrowsError(try ImageDecoder.readFile(pathBytes: Array("/etc/hostname\0junk".utf8), maxBytes: 1 << 20)) {
            XCTAssertEqual(($0 as? ImageError)?.kind, .unreadable(reason: "the name holds a NUL byte"))
            XCTAssertEqual(($0 as? ImageError)?.path, "/etc/hostname\\x00junk")
        }
    }
}
