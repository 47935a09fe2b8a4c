import FERImage
import XCTest

import FERFaces

final class ResizeWarpTests: XCTestCase {
    /// cv2.resize INTER_LINEAR outputs: within one level (measured: exact).
    func testResizeMatchesOpenCV() throws {
        var worst = 0, exactSum = 0.0, count = 0
        for c in try FaceFixtures.list("resize") {
            let input: RGBImage
            do { input = try FaceFixtures.image(c["input"] as! String) } catch is XCTSkip { continue }
            let expected = try FaceFixtures.image(c["output"] as! String)
            let got = try LinearResize.resize(input, width: c["width"] as! Int, height: c["height"] as! Int)
            XCTAssertEqual(got.width, expected.width)
            XCTAssertEqual(got.height, expected.height)
            let (d, exact) = compare(got, expected)
            XCTAssertLessThanOrEqual(d, 1, "\(c["output"]!)")
            worst = max(worst, d); exactSum += exact; count += 1
        }
        XCTAssertGreaterThan(count, 8)
        print("resize vs cv2: \(count) cases, max diff \(worst), mean share exact \(exactSum / Double(count))")
        XCTAssertEqual(worst, 0, "the resize was exact when written")
    }

    /// cv2.warpAffine outputs: within one level (measured: exact).
    func testWarpMatchesOpenCV() throws {
        var worst = 0, exactSum = 0.0, count = 0
        for c in try FaceFixtures.list("warp") {
            let input: RGBImage
            do { input = try FaceFixtures.image(c["input"] as! String) } catch is XCTSkip { continue }
            let expected = try FaceFixtures.image(c["output"] as! String)
            let m = try FaceFixtures.doubles(c["matrix"])
            let got = try WarpAffine.linear(input, matrix: AffineMatrix(m[0], m[1], m[2], m[3], m[4], m[5]),
                                            width: 112, height: 112)
            let (d, exact) = compare(got, expected)
            XCTAssertLessThanOrEqual(d, 1, "\(c["output"]!)")
            worst = max(worst, d); exactSum += exact; count += 1
        }
        XCTAssertGreaterThanOrEqual(count, 7)
        print("warp vs cv2: \(count) cases, max diff \(worst), mean share exact \(exactSum / Double(count))")
        XCTAssertEqual(worst, 0, "the warp was exact when written")
    }

    func testDetectorInput() throws {
        let c = try FaceFixtures.list("resize").first { ($0["input"] as! String) == "in-noise88x128.png" && ($0["width"] as! Int) == 64 }!
        let image = try FaceFixtures.image(c["input"] as! String)   // 128 wide, 88 high
        let expected = try FaceFixtures.image(c["output"] as! String)
        let prepared = try DetectorInput.prepare(image, maxSide: 64)
        XCTAssertEqual(prepared.width, 64)
        XCTAssertEqual(prepared.height, 44)
        XCTAssertEqual(prepared.scaleX, 0.5)
        XCTAssertEqual(prepared.scaleY, 0.5)
        XCTAssertEqual(prepared.input.count, 64 * 44 * 3)
        for i in 0..<(64 * 44) {
            XCTAssertEqual(prepared.input[3 * i], Float(expected.pixels[3 * i + 2]) - 104)
            XCTAssertEqual(prepared.input[3 * i + 1], Float(expected.pixels[3 * i + 1]) - 117)
            XCTAssertEqual(prepared.input[3 * i + 2], Float(expected.pixels[3 * i]) - 123)
        }
        // Never enlarged: the input is the image itself.
        let same = try DetectorInput.prepare(image)
        XCTAssertEqual(same.width, 128)
        XCTAssertEqual(same.height, 88)
        XCTAssertEqual(same.scaleX, 1)
        XCTAssertEqual(same.input[0], Float(image.pixels[2]) - 104)
        // Rounding half to even, per axis: 1280x886 at 640 -> 640x443; 300x201 at 100 -> 100x67.
        XCTAssertTrue(DetectorInput.targetSize(width: 1280, height: 886, maxSide: 640) == (640, 443))
        XCTAssertTrue(DetectorInput.targetSize(width: 300, height: 201, maxSide: 100) == (100, 67))
        XCTAssertTrue(DetectorInput.targetSize(width: 5, height: 1000, maxSide: 100) == (1, 100))
        XCTAssertThrowsError(try DetectorInput.prepare(image, maxSide: 0))
    }

    func testBadArguments() throws {
        let image = RGBImage(width: 3, height: 2, pixels: [UInt8](repeating: 200, count: 18))
        XCTAssertThrowsError(try LinearResize.resize(image, width: 0, height: 4))
        XCTAssertThrowsError(try WarpAffine.linear(image, matrix: AffineMatrix(1, 0, 0, 0, 1, 0), width: -1, height: 4))
        XCTAssertThrowsError(try WarpAffine.linear(image, matrix: AffineMatrix(.nan, 0, 0, 0, 1, 0), width: 4, height: 4)) {
            guard case FaceError.nonFinite = $0 else { return XCTFail("\($0)") }
        }
        // Huge and singular matrices: border zeros (or OpenCV's all-zero inverse), no trap.
        let far = try WarpAffine.linear(image, matrix: AffineMatrix(1e-30, 0, 0, 0, 1e-30, 0), width: 4, height: 4)
        XCTAssertEqual(far.pixels.filter { $0 != 0 }.count, 3, "only (0, 0) maps inside")
        let flat = try WarpAffine.linear(image, matrix: AffineMatrix(0, 0, 0, 0, 0, 0), width: 4, height: 4)
        XCTAssertEqual(flat.pixels, [UInt8](repeating: 200, count: 48), "singular: every pixel reads (0, 0)")
        let big = try WarpAffine.linear(image, matrix: AffineMatrix(1e30, 0, 0, 0, 1e30, 0), width: 4, height: 4)
        XCTAssertEqual(big.pixels, [UInt8](repeating: 200, count: 48), "as cv2: the inverse maps all to ~(0, 0)")
    }
}
