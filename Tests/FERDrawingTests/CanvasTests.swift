import FERDrawing
import FERImage
import Foundation
import XCTest

#if canImport(FoundationXML)
import FoundationXML
#endif

final class CanvasTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "fer-drawing-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Every byte value in every channel, in an order with no pattern a byte swap would preserve.
    private func noiseImage(width: Int, height: Int) -> RGBImage {
        var state: UInt32 = 0x9E37_79B9
        let pixels = (0..<width * height * 3).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    private func rgb(_ image: RGBImage, _ x: Int, _ y: Int) -> [UInt8] {
        let p = image[x, y]
        return [p.0, p.1, p.2]
    }

    // MARK: Pixels in and out

    func testImageRoundTripsThroughCanvasAndPNGByteIdentical() throws {
        let original = noiseImage(width: 37, height: 23)
        let canvas = try RasterCanvas(image: original)
        XCTAssertEqual(canvas.pixelWidth, 37)
        XCTAssertEqual(canvas.pixelHeight, 23)
        XCTAssertEqual(try canvas.image(), original)
        let path = directory + "/round.png"
        try canvas.writePNG(to: path)
        let decoded = try ImageDecoder.decode(path: path)
        XCTAssertEqual(decoded.format, .png)
        XCTAssertEqual(decoded.image, original)
    }

    func testDecodedJPEGFixtureRoundTripsByteIdentical() throws {
        // A committed JPEG fixture, decoded as PIL does, through the canvas and back as PNG.
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/images/inputs/jpeg-420-75x51.jpg").path
        let image = try ImageDecoder.decode(path: path).image
        let out = directory + "/jpeg.png"
        try RasterCanvas(image: image).writePNG(to: out)
        XCTAssertEqual(try ImageDecoder.decode(path: out).image, image)
    }

    func testBlankCanvasHasItsBackground() throws {
        let canvas = try RasterCanvas(width: 5, height: 4, background: DrawingColor(hex: 0x336699))
        let image = try canvas.image()
        XCTAssertEqual(image.width, 5)
        XCTAssertEqual(image.height, 4)
        for y in 0..<4 { for x in 0..<5 { XCTAssertEqual(rgb(image, x, y), [0x33, 0x66, 0x99]) } }
    }

    func testFilledRectangleCoversExactlyItsPixels() throws {
        let canvas = try RasterCanvas(width: 20, height: 10, background: .white)
        canvas.fillRectangle(x: 3, y: 2, width: 5, height: 4, color: DrawingColor(red: 1, green: 0, blue: 0))
        let image = try canvas.image()
        for y in 0..<10 {
            for x in 0..<20 {
                let inside = (3..<8).contains(x) && (2..<6).contains(y)
                XCTAssertEqual(rgb(image, x, y), inside ? [255, 0, 0] : [255, 255, 255], "pixel (\(x), \(y))")
            }
        }
    }

    func testStrokedRectangleIsItsOutline() throws {
        let canvas = try RasterCanvas(width: 12, height: 12, background: .black)
        canvas.antialias = false
        // A 2-pixel line centred on the edges of (3, 3)-(9, 9): pixels 2...3 and 8...9 on each side.
        canvas.strokeRectangle(x: 3, y: 3, width: 6, height: 6, color: .white, lineWidth: 2)
        let image = try canvas.image()
        for y in 0..<12 {
            for x in 0..<12 {
                let outer = (2..<10).contains(x) && (2..<10).contains(y)
                let inner = (4..<8).contains(x) && (4..<8).contains(y)
                XCTAssertEqual(rgb(image, x, y), outer && !inner ? [255, 255, 255] : [0, 0, 0], "pixel (\(x), \(y))")
            }
        }
    }

    func testTranslucentFillBlendsOverThePicture() throws {
        let canvas = try RasterCanvas(width: 4, height: 4, background: .white)
        canvas.fillRectangle(x: 0, y: 0, width: 4, height: 4, color: DrawingColor.black.withAlpha(0.5))
        let value = try canvas.image()[1, 1].0
        XCTAssertTrue((127...128).contains(value), "half black over white gave \(value)")
    }

    func testLineAndCircle() throws {
        let canvas = try RasterCanvas(width: 30, height: 30, background: .white)
        canvas.antialias = false
        canvas.drawLine(x0: 0, y0: 5, x1: 30, y1: 5, color: DrawingColor(hex: 0x0000FF), lineWidth: 2)
        canvas.fillCircle(centerX: 20, centerY: 20, radius: 6, color: DrawingColor(hex: 0x00FF00))
        let image = try canvas.image()
        for x in 0..<30 {
            XCTAssertEqual(rgb(image, x, 4), [0, 0, 255])
            XCTAssertEqual(rgb(image, x, 5), [0, 0, 255])
            XCTAssertEqual(rgb(image, x, 3), [255, 255, 255])
            XCTAssertEqual(rgb(image, x, 6), [255, 255, 255])
        }
        XCTAssertEqual(rgb(image, 20, 20), [0, 255, 0])
        XCTAssertEqual(rgb(image, 24, 20), [0, 255, 0])
        XCTAssertEqual(rgb(image, 27, 20), [255, 255, 255])
        XCTAssertEqual(rgb(image, 25, 25), [255, 255, 255], "outside the circle, inside its bounding square")
    }

    // MARK: Text

    func testTextDrawsInsideItsMeasuredBox() throws {
        let canvas = try RasterCanvas(width: 240, height: 80, background: .white)
        let text = "Happy 91.07%"
        let size = canvas.measureText(text, size: 20)
        XCTAssertGreaterThan(size.width, 60)
        XCTAssertEqual(size.height, size.ascent + size.descent, accuracy: 1e-9)
        XCTAssertGreaterThan(size.height, 15)
        XCTAssertLessThan(size.height, 40)
        XCTAssertGreaterThan(canvas.measureText(text + text, size: 20).width, size.width * 1.9)
        XCTAssertGreaterThan(canvas.measureText(text, size: 40).width, size.width * 1.9)

        let box = canvas.drawText(text, x: 20, y: 30, size: 20, color: .black)
        XCTAssertEqual(box, DrawingRect(x: 20, y: 30, width: size.width, height: size.height))
        let image = try canvas.image()
        var inside = 0, outside = 0
        for y in 0..<80 {
            for x in 0..<240 where rgb(image, x, y) != [255, 255, 255] {
                // One pixel of slack for antialiased edges.
                let inBox = Double(x) >= box.x - 1 && Double(x) < box.x + box.width + 1
                    && Double(y) >= box.y - 1 && Double(y) < box.y + box.height + 1
                if inBox { inside += 1 } else { outside += 1 }
            }
        }
        XCTAssertGreaterThan(inside, 100, "the text left too few marks")
        XCTAssertEqual(outside, 0, "text drawn outside its measured box")
    }

    func testCentredAndRightAlignedText() throws {
        let canvas = try RasterCanvas(width: 200, height: 40, background: .white)
        let width = canvas.measureText("sad", size: 16).width
        XCTAssertEqual(canvas.drawText("sad", x: 100, y: 0, size: 16, color: .black, alignment: .center).x,
                       100 - width / 2, accuracy: 1e-9)
        XCTAssertEqual(canvas.drawText("sad", x: 100, y: 20, size: 16, color: .black, alignment: .right).x,
                       100 - width, accuracy: 1e-9)
        let image = try canvas.image()
        let rightHalfMarked = (101..<200).contains { x in (20..<40).contains { rgb(image, x, $0) != [255, 255, 255] } }
        XCTAssertFalse(rightHalfMarked, "right-aligned text crossed its x")
    }

    func testLabelHasAFilledBoxBehindItsText() throws {
        let canvas = try RasterCanvas(width: 120, height: 40, background: .white)
        let box = canvas.drawLabel("fear 0.42", x: 10, y: 5, size: 12, textColor: .white,
                                   background: DrawingColor(hex: 0x202020), padding: 3)
        let size = canvas.measureText("fear 0.42", size: 12)
        XCTAssertEqual(box.width, size.width + 6, accuracy: 1e-9)
        XCTAssertEqual(box.height, size.height + 6, accuracy: 1e-9)
        let image = try canvas.image()
        XCTAssertEqual(rgb(image, 11, 6), [0x20, 0x20, 0x20], "box corner")
        XCTAssertEqual(rgb(image, 9, 6), [255, 255, 255], "left of the box")
        let light = (13..<Int(box.x + box.width) - 3).contains { x in (8..<Int(box.y + box.height) - 3).contains { rgb(image, x, $0).first! > 0x80 } }
        XCTAssertTrue(light, "no light text on the box")
    }

    // MARK: SVG

    func testSVGFileIsWrittenAndWellFormed() throws {
        let path = directory + "/plot.svg"
        let canvas = try SVGCanvas(path: path, width: 160, height: 90)
        XCTAssertEqual(canvas.width, 160)
        canvas.fillRectangle(x: 0, y: 0, width: 160, height: 90, color: .white)
        canvas.strokeRectangle(x: 10, y: 10, width: 50, height: 40, color: DrawingColor(hex: 0x08306B))
        canvas.drawText("neutral 80%", x: 80, y: 60, size: 10, color: .black, alignment: .center)
        try canvas.finish()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let parser = XMLParser(data: data)
        let delegate = RootElement()
        parser.delegate = delegate
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))")
        XCTAssertEqual(delegate.root, "svg")
        XCTAssertEqual(delegate.attributes["width"], "160pt")
        XCTAssertEqual(delegate.attributes["height"], "90pt")
        XCTAssertGreaterThan(delegate.elementCount, 4, "the drawing left no elements")
        XCTAssertThrowsError(try canvas.finish()) { XCTAssertEqual($0 as? DrawingError, .finished(path: path)) }
    }

    // MARK: Errors

    func testUnwritablePathsAreTypedErrorsNamingThePath() throws {
        let missing = directory + "/no/such/dir/out.png"
        let canvas = try RasterCanvas(width: 4, height: 4)
        XCTAssertThrowsError(try canvas.writePNG(to: missing)) { error in
            XCTAssertEqual(error as? DrawingError, .cannotWrite(path: missing, reason: "No such file or directory"))
            XCTAssertEqual("\(error)", "\(missing): cannot write: No such file or directory")
        }
        XCTAssertThrowsError(try canvas.writePNG(to: directory)) { error in
            XCTAssertEqual(error as? DrawingError, .cannotWrite(path: directory, reason: "Is a directory"))
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory), "a failed write removed what was at the path")
        let svg = directory + "/missing/plot.svg"
        XCTAssertThrowsError(try SVGCanvas(path: svg, width: 10, height: 10)) { error in
            XCTAssertEqual(error as? DrawingError, .cannotWrite(path: svg, reason: "No such file or directory"))
        }
    }

    func testSizesCairoCannotHoldAreRefused() {
        for (w, h) in [(0, 10), (10, -1), (RasterCanvas.maxSide + 1, 1)] {
            XCTAssertThrowsError(try RasterCanvas(width: w, height: h)) {
                XCTAssertEqual($0 as? DrawingError, .invalidSize(width: Double(w), height: Double(h)))
            }
        }
        XCTAssertThrowsError(try SVGCanvas(path: directory + "/x.svg", width: .nan, height: 10)) {
            guard case .invalidSize = $0 as? DrawingError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/x.svg"))
    }

    func testFailedDrawingIsReportedWithCairosStatus() throws {
        let canvas = try RasterCanvas(width: 8, height: 8)
        canvas.drawText("x", x: 1, y: 1, size: 5, color: .black, rotation: .nan)
        let expected = DrawingError.cairo(operation: "drawing", path: nil, status: "invalid matrix (not invertible)")
        XCTAssertThrowsError(try canvas.image()) { XCTAssertEqual($0 as? DrawingError, expected) }
        let path = directory + "/bad.png"
        XCTAssertThrowsError(try canvas.writePNG(to: path)) {
            XCTAssertEqual($0 as? DrawingError,
                           .cairo(operation: "drawing", path: path, status: "invalid matrix (not invertible)"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "a failed canvas left a file")
    }
}

/// Records the root element of an XML document and counts its elements.
private final class RootElement: NSObject, XMLParserDelegate {
    var root: String?
    var attributes: [String: String] = [:]
    var elementCount = 0

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elementCount += 1
        if root == nil {
            root = elementName
            attributes = attributeDict
        }
    }
}
