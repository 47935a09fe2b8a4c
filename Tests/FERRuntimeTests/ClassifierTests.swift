import FERRuntime
import Foundation
import XCTest

/// The embedding API: the same answers as the engine and the PyTorch fixtures, from pixels,
/// encoded bytes and tensors, and from many threads at once.
final class ClassifierTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let weights = root.appendingPathComponent("weights/lfnsb7-seeded.pth").path
    static let sample = root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png").path

    private func expected(_ input: String) throws -> Tensor {
        try NPY.read(path: Self.root.appendingPathComponent("Tests/Fixtures/expected/lfnsb7/\(input).logits.npy").path)
    }

    func testEncodedBytesGiveThePyTorchPipelinesLogits() throws {
        guard let png = FileManager.default.contents(atPath: Self.sample) else {
            throw XCTSkip("\(Self.sample) is missing: run tools/setup")
        }
        let classifier = try FERClassifier(contentsOf: Self.weights)
        let result = try classifier.classify(encoded: [UInt8](png))
        let want = try expected("images-b2").data[0..<7]
        for (a, b) in zip(result.logits, want) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        XCTAssertEqual(result.index, want.indices.max { want[$0] < want[$1] }! - want.startIndex)
        XCTAssertEqual(result.label, LabelSet.rafdb.names[result.index!])
        XCTAssertEqual(result.probability, result.probabilities.max())
    }

    func testTensorsLargerThanOneBatchAndModelsFromMemory() throws {
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: Self.weights))
        let classifier = try FERClassifier(bytes: [UInt8](bytes), maxBatch: 3)
        let input = try NPY.read(path: Self.root.appendingPathComponent("Tests/Fixtures/inputs/random-b7.npy").path)
        let results = try classifier.classify(tensor: input)
        let want = try expected("random-b7")
        XCTAssertEqual(results.count, 7)
        for (i, r) in results.enumerated() {
            for (a, b) in zip(r.logits, want.data[i * 7..<(i + 1) * 7]) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        }
    }

    func testChannelLastInputsAreTheSameImagesWithoutATransposition() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights, maxBatch: 4)
        let input = try NPY.read(path: Self.root.appendingPathComponent("Tests/Fixtures/inputs/random-b7.npy").path)
        let channelsFirst = try classifier.classify(tensor: input)
        let channelsLast = try classifier.classify(channelsLast: input.channelsLast())
        XCTAssertEqual(channelsLast, channelsFirst)
        // One image without a batch axis; a channel-first array handed in as channel-last is refused.
        XCTAssertEqual(try classifier.classify(channelsLast: input.slice(2).channelsLast()), [channelsFirst[2]])
        XCTAssertThrowsError(try classifier.classify(channelsLast: input)) { error in
            XCTAssertEqual("\(error)", "input has shape [7, 3, 112, 112], expected [N, 112, 112, 3] or [112, 112, 3]")
        }
    }

    func testTheDetectorIsNotAClassifier() throws {
        let detector = Self.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path
        XCTAssertThrowsError(try FERClassifier(contentsOf: detector)) { error in
            XCTAssertEqual("\(error)", "RetinaFace (MobileNet-0.25) is a face detector, not a classifier or embedder")
        }
    }

    func testEightThreadsGiveExactlyTheSequentialResults() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights, maxBatch: 2)
        let input = try NPY.read(path: Self.root.appendingPathComponent("Tests/Fixtures/inputs/random-b7.npy").path)
        let samples = (0..<7).map { input.slice($0) }
        let sequential = try samples.map { try classifier.classify(tensor: $0)[0] }
        let collected = Collected(count: 8 * samples.count)
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for i in 0..<samples.count {
                let index = (i + thread) % samples.count  // different orders on different threads
                collected.set(thread * samples.count + index, try? classifier.classify(tensor: samples[index])[0])
            }
        }
        for thread in 0..<8 {
            for i in 0..<samples.count {
                XCTAssertEqual(collected.get(thread * samples.count + i), sequential[i], "thread \(thread) sample \(i)")
            }
        }
    }

    func testEmbeddersReturnEmbeddingsAndBadInputsThrow() throws {
        let lfn = try FERClassifier(contentsOf: Self.root.appendingPathComponent("Tests/Fixtures/models/lfn/model.pth").path)
        let image = RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 128, count: 12))
        let result = try lfn.classify(image)
        XCTAssertNil(result.label)
        XCTAssertEqual(result.embedding?.count, 256)
        XCTAssertEqual(Double(result.embedding!.map { $0 * $0 }.reduce(0, +)), 1, accuracy: 1e-4)

        let classifier = try FERClassifier(contentsOf: Self.weights)
        XCTAssertThrowsError(try classifier.classify(encoded: Array("not an image".utf8))) { error in
            XCTAssertTrue(error is ImageError, "\(error)")
        }
        XCTAssertThrowsError(try classifier.classify(tensor: Tensor(shape: [1, 3, 8, 8]))) { error in
            XCTAssertTrue("\(error)".contains("expected"), "\(error)")
        }
        XCTAssertThrowsError(try FERClassifier(contentsOf: Self.weights, labels: ["a", "b"])) { error in
            XCTAssertEqual(error as? ClassifierError, .labelCount(expected: 7, got: 2))
        }
    }
}

/// Results written from several threads, each to its own slot.
private final class Collected: @unchecked Sendable {
    private var slots: [Classification?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: Classification?) { lock.lock(); slots[i] = value; lock.unlock() }
    func get(_ i: Int) -> Classification? { lock.lock(); defer { lock.unlock() }; return slots[i] }
}
