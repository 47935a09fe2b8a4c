import CABICheck
import FERRuntime
import Foundation
import XCTest

/// The C ABI, used from C (Tests/CABICheck/check.c): results equal the Swift API's, every error
/// path returns a code and a message, 8 C threads agree with the sequential run, and a burst of
/// C threads leaves no more than the classifier's bounded pool of sessions allocated.
final class CABITests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let weights = root.appendingPathComponent("weights/lfnsb7-seeded.pth").path

    static func samplePNG() throws -> [UInt8] {
        let samplePath = root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png").path
        guard let png = FileManager.default.contents(atPath: samplePath) else {
            throw XCTSkip("\(samplePath) is missing: run tools/setup")
        }
        return [UInt8](png)
    }

    func testACProgramGetsTheSwiftAPIsResultsAndClearErrors() throws {
        let weights = Self.weights
        let png = try Self.samplePNG()
        let decoded = try ImageDecoder.decode(bytes: png)
        var logits = [Float](repeating: 0, count: 7), rgbLogits = [Float](repeating: 0, count: 7)
        var message = [CChar](repeating: 0, count: 512)
        let status = png.withUnsafeBufferPointer { bytes in
            decoded.image.pixels.withUnsafeBufferPointer { rgb in
                fer_c_abi_check(weights, bytes.baseAddress, bytes.count, rgb.baseAddress,
                                Int32(decoded.image.width), Int32(decoded.image.height), &logits, &rgbLogits, &message, message.count)
            }
        }
        XCTAssertEqual(status, 0, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let swift = try FERClassifier(contentsOf: weights).classify(encoded: png)
        XCTAssertEqual(logits, swift.logits)
        XCTAssertEqual(rgbLogits, swift.logits)
    }

    /// Class names for every index and the load options (label set, names file, threads) from C.
    func testACProgramNamesEveryClassAndChoosesLabelsAndThreads() throws {
        let png = try Self.samplePNG()
        let names = FileManager.default.temporaryDirectory.appendingPathComponent("fer-c-names-\(getpid()).txt")
        try "a\nb\n\nc\nd\ne\nf\n g \n".write(to: names, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: names) }
        var message = [CChar](repeating: 0, count: 512)
        let status = png.withUnsafeBufferPointer { bytes in
            fer_c_abi_classes(Self.weights, names.path, bytes.baseAddress, bytes.count, &message, message.count)
        }
        XCTAssertEqual(status, 0, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// A burst of C callers (32, or 4 per idle session the pool keeps where that is more) gets a
    /// session each; afterwards the heap holds at most the pool's sessions more than before.
    func testABurstOfCThreadsLeavesOnlyTheBoundedPoolAllocated() throws {
        let png = try Self.samplePNG()
        let kept = FERClassifier.defaultMaxIdleSessions(threads: 1)
        let threads = max(32, 4 * kept)
        var heapWarm = 0, heapAfter = 0, rssWarm = 0, rssAfter = 0
        var message = [CChar](repeating: 0, count: 512)
        let status = png.withUnsafeBufferPointer { bytes in
            fer_c_abi_burst(Self.weights, bytes.baseAddress, bytes.count, Int32(threads),
                            &heapWarm, &heapAfter, &rssWarm, &rssAfter, &message, message.count)
        }
        XCTAssertEqual(status, 0, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        // The C ABI's sessions hold one image (maxBatch 1).
        let session = try FERModel(contentsOf: Self.weights).makeSession(batch: 1).workspaceBytes
        let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
        print("\(threads) C threads: heap \(mib(heapWarm)) -> \(mib(heapAfter)), resident \(mib(rssWarm)) -> \(mib(rssAfter)); "
              + "one session \(mib(session)), pool keeps \(kept)")
        // Unbounded, the heap grows by (threads - 1) sessions; bounded, by at most `kept - 1`,
        // plus the threads' error slots and allocator slack.
        XCTAssertLessThanOrEqual(heapAfter - heapWarm, (kept - 1) * session + 16 << 20,
                                 "\(mib(heapAfter - heapWarm)) still allocated after \(threads) threads")
    }

    /// The whole-photo calls from C give the Swift FaceAnalyzer's faces (boxes, landmarks, scores,
    /// classes, crop), the same for raw pixels, from 4 threads at once, and every error path a code and
    /// a message (check.c, fer_c_abi_analyze).
    func testACProgramAnalysesAPhotoAsTheSwiftAPIDoes() throws {
        let photoPath = Self.root.appendingPathComponent(".downloads/photos/t1.jpg").path
        guard let data = FileManager.default.contents(atPath: photoPath) else { throw XCTSkip("\(photoPath) is missing: run tools/setup") }
        let photo = [UInt8](data)
        let detector = Self.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path
        let image = try ImageDecoder.decode(bytes: photo).image
        let capacity = 16
        var faces: Int32 = -1
        var boxes = [Float](repeating: 0, count: 4 * capacity), landmarks = [Float](repeating: 0, count: 10 * capacity)
        var scores = [Float](repeating: 0, count: capacity), classes = [Int32](repeating: -1, count: capacity)
        var crop = [UInt8](repeating: 0, count: 112 * 112 * 3)
        var message = [CChar](repeating: 0, count: 512)
        let status = photo.withUnsafeBufferPointer { bytes in
            image.pixels.withUnsafeBufferPointer { rgb in
                fer_c_abi_analyze(Self.weights, detector, bytes.baseAddress, bytes.count, rgb.baseAddress,
                                  Int32(image.width), Int32(image.height), Int32(capacity), &faces, &boxes, &landmarks,
                                  &scores, &classes, &crop, &message, message.count)
            }
        }
        XCTAssertEqual(status, 0, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let swift = try FaceAnalyzer(detectorPath: detector, classifier: FERClassifier(contentsOf: Self.weights)).analyze(image)
        XCTAssertEqual(Int(faces), swift.faces.count)
        XCTAssertEqual(swift.faces.count, 6, "t1.jpg has six faces")
        for (i, face) in swift.faces.enumerated() {
            XCTAssertEqual(Array(boxes[4 * i..<4 * i + 4]), face.face.box.map { Float($0) }, "face \(i) box")
            XCTAssertEqual(Array(landmarks[10 * i..<10 * i + 10]), face.face.landmarks.flatMap { [Float($0.x), Float($0.y)] })
            XCTAssertEqual(scores[i], Float(face.face.score))
            XCTAssertEqual(Int(classes[i]), face.classification.index)
        }
        XCTAssertEqual(crop, swift.faces[0].alignment.image.pixels)
    }
}
