import FERRuntime
import Foundation
import XCTest

/// The whole-photo pipeline (FaceAnalyzer) against our PyTorch + OpenCV + scikit-image reference
/// (tools/reference/photo_pipeline.py, fixtures in Tests/Fixtures/photos): same faces in the same
/// order, boxes and landmarks within 0.5 px, the same template, crops within one level on average,
/// the same labels and close logits. Photos come from tools/setup (.downloads/photos).
final class PhotoPipelineTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let weights = root.appendingPathComponent("weights/lfnsb7-seeded.pth").path
    static let detector = root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path
    static let cases = ["t1-640", "t1-320", "astronaut-640", "camera-640", "chelsea-640"]

    struct Case {
        var name: String
        var json: [String: Any]
        var image: RGBImage
        var crops: [UInt8]  // (N, 112, 112, 3)
        var faces: [[String: Any]] { json["faces"] as! [[String: Any]] }
    }

    static func load(_ name: String) throws -> Case {
        let dir = root.appendingPathComponent("Tests/Fixtures/photos")
        let data = try Data(contentsOf: dir.appendingPathComponent("\(name).json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let photo = root.appendingPathComponent(".downloads/photos/\(json["photo"] as! String)").path
        guard FileManager.default.fileExists(atPath: photo) else { throw XCTSkip("\(photo) is missing: run tools/setup") }
        let image = try ImageDecoder.decode(path: photo).image
        let crops = try uint8NPY(Data(contentsOf: dir.appendingPathComponent(json["crops"] as! String)))
        return Case(name: name, json: json, image: image, crops: crops)
    }

    /// The data of a `|u1` .npy file (the reference's crops); the runtime's NPY reader takes floats only.
    static func uint8NPY(_ data: Data) throws -> [UInt8] {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, bytes[1...5].elementsEqual("NUMPY".utf8) else { throw XCTSkip("not an .npy file") }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let header = String(decoding: bytes[10..<10 + headerLength], as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '|u1'"), header)
        return Array(bytes[(10 + headerLength)...])
    }

    func analyzer(detectSize: Int, maxFaces: Int = 100, threshold: Double = 0.6) throws -> FaceAnalyzer {
        try FaceAnalyzer(detectorPath: Self.detector, classifier: FERClassifier(contentsOf: Self.weights),
                         options: FaceDetectionOptions(detectSize: detectSize, threshold: threshold, maxFaces: maxFaces))
    }

    func testEveryPhotoGivesTheReferencesFacesCropsAndLabels() throws {
        for name in Self.cases {
            let c = try Self.load(name)
            let analysis = try analyzer(detectSize: c.json["detect_size"] as! Int).analyze(c.image)
            XCTAssertEqual([analysis.detectorWidth, analysis.detectorHeight], [c.json["input_width"] as! Int, c.json["input_height"] as! Int], name)
            XCTAssertEqual(analysis.faces.count, c.faces.count, "\(name): face count")
            XCTAssertFalse(analysis.truncated)
            let plane = 112 * 112 * 3
            for (k, (got, want)) in zip(analysis.faces, c.faces).enumerated() {
                let label = "\(name) face \(k)"
                for (a, b) in zip(got.face.box, want["box"] as! [Double]) { XCTAssertEqual(a, b, accuracy: 0.5, label) }
                let points = (want["landmarks"] as! [[Double]])
                for (p, q) in zip(got.face.landmarks, points) {
                    XCTAssertEqual(p.x, q[0], accuracy: 0.5, label)
                    XCTAssertEqual(p.y, q[1], accuracy: 0.5, label)
                }
                XCTAssertEqual(got.face.score, want["score"] as! Double, accuracy: 1e-3, label)
                XCTAssertEqual(got.alignment.template, want["template"] as? Int, label)
                let reference = c.crops[k * plane..<(k + 1) * plane]
                let meanDiff = zip(got.alignment.image.pixels, reference).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } / Double(plane)
                XCTAssertLessThanOrEqual(meanDiff, 1.0, "\(label): crop differs by \(meanDiff) levels on average")
                XCTAssertEqual(got.classification.index, want["label"] as? Int, label)
                for (a, b) in zip(got.classification.logits, want["logits"] as! [Double]) {
                    XCTAssertEqual(Double(a), b, accuracy: 0.1, label)
                }
            }
        }
    }

    /// The classifier on the reference's own crops gives its logits closely (the end-to-end check
    /// above also carries the landmarks' tiny float differences through the warp).
    func testTheReferenceCropsGiveTheReferenceLogits() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights)
        for name in ["t1-640", "camera-640"] {
            let c = try Self.load(name)
            let plane = 112 * 112 * 3
            let images = (0..<c.faces.count).map { RGBImage(width: 112, height: 112, pixels: Array(c.crops[$0 * plane..<($0 + 1) * plane])) }
            for (result, want) in zip(try classifier.classify(images), c.faces) {
                for (a, b) in zip(result.logits, want["logits"] as! [Double]) { XCTAssertEqual(Double(a), b, accuracy: 1e-3, name) }
            }
        }
    }

    /// --max-faces: the best faces, the same as without the limit, and `truncated` says more were found.
    func testMaxFacesKeepsTheBestAndSaysSo() throws {
        let c = try Self.load("t1-640")
        let all = try analyzer(detectSize: 640).analyze(c.image)
        let two = try analyzer(detectSize: 640, maxFaces: 2).analyze(c.image)
        XCTAssertEqual(two.faces.map(\.face), Array(all.faces.prefix(2)).map(\.face))
        XCTAssertTrue(two.truncated)
        XCTAssertFalse(try analyzer(detectSize: 640, maxFaces: 6).analyze(c.image).truncated)
    }

    /// A threshold of 0 makes every anchor a candidate (thousands): the photo still costs at most
    /// `maxFaces` faces, NMS stops there, and the run stays short.
    func testAPhotoFullOfDetectionsStaysBounded() throws {
        let c = try Self.load("t1-640")
        let start = Date()
        let analysis = try analyzer(detectSize: 640, maxFaces: 50, threshold: 0).analyze(c.image)
        XCTAssertEqual(analysis.faces.count, 50)
        XCTAssertTrue(analysis.truncated)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "bounded: 50 faces, not one per anchor")
    }

    func testManyThreadsGetTheSameFaces() throws {
        let c = try Self.load("t1-640")
        let analyzer = try analyzer(detectSize: 640)
        let expected = try analyzer.analyze(c.image).faces.map(\.classification.logits)
        final class Results: @unchecked Sendable {  // appended under `lock`
            let lock = NSLock()
            var all: [[[Float]]] = []
        }
        let results = Results()
        let image = c.image
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let logits = (try? analyzer.analyze(image).faces.map(\.classification.logits)) ?? []
            results.lock.withLock { results.all.append(logits) }
        }
        XCTAssertEqual(results.all.count, 4)
        for r in results.all { XCTAssertEqual(r, expected) }
    }

    func testBadDetectorsAndOptionsAreRefused() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights)
        XCTAssertThrowsError(try FaceAnalyzer(detector: classifier.model, classifier: classifier)) {
            XCTAssertEqual($0 as? FaceAnalysisError, .notADetector("LFNSB (7 classes)"))
        }
        for options in [FaceDetectionOptions(detectSize: 8), FaceDetectionOptions(threshold: 1), FaceDetectionOptions(threshold: .nan),
                        FaceDetectionOptions(nmsIoU: 2), FaceDetectionOptions(maxFaces: 0)] {
            XCTAssertThrowsError(try FaceAnalyzer(detectorPath: Self.detector, classifier: classifier, options: options)) {
                guard case FaceAnalysisError.invalidOption = $0 else { return XCTFail("\($0)") }
            }
        }
    }
}
