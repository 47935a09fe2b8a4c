import FEREngine
import FERFaces
import FERImage
import FERTensor
import Foundation
import XCTest

/// The detector end to end: photo -> detector input -> RetinaFace through the engine's plan at the
/// photo's own size -> decode and NMS, against the reference figures in detection.md.
final class DetectionPipelineTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testTheAstronautHasOneFaceWhereTheReferenceFindsIt() throws {
        let photo = Self.root.deletingLastPathComponent().appendingPathComponent("shared/data/images/astronaut.png").path
        guard FileManager.default.fileExists(atPath: photo) else { throw XCTSkip("\(photo) is missing: ../shared is not beside the project") }
        let image = try ImageDecoder.decode(path: photo).image
        let prepared = try DetectorInput.prepare(image, maxSide: 512)  // its own size, as the reference ran it
        XCTAssertEqual([prepared.height, prepared.width], [512, 512])
        let model = try FERModel(contentsOf: Self.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path)
        let session = try model.makeSession(batch: 1, height: prepared.height, width: prepared.width)
        try prepared.input.withUnsafeBufferPointer { try session.run(nhwc: $0, batch: 1) }
        let faces = try RetinaFaceDecoder.decode(
            boxes: Array(try XCTUnwrap(session.output("boxes"))), scores: Array(try XCTUnwrap(session.output("scores"))),
            landmarks: Array(try XCTUnwrap(session.output("landmarks"))), height: prepared.height, width: prepared.width,
            scaleX: prepared.scaleX, scaleY: prepared.scaleY)
        XCTAssertEqual(faces.count, 1, "\(faces)")
        let face = try XCTUnwrap(faces.first)
        // detection.md: "gives 1 face near (177, 56, 270, 176)"; our PyTorch reference: 0.9997, (177.5, 56.4, 270.1, 176.4).
        for (got, want) in zip(face.box, [177.5, 56.4, 270.1, 176.4]) { XCTAssertEqual(got, want, accuracy: 0.5) }
        XCTAssertEqual(face.score, 0.9997, accuracy: 0.001)
        XCTAssertEqual(face.landmarks.count, 5)
    }
}
