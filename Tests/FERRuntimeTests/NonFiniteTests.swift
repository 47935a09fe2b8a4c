import FERRuntime
import Foundation
import XCTest

/// NaN and infinity: refused per sample, before inference for inputs and after it for outputs, so
/// no result ever holds a non-finite value and the other samples of the call keep theirs.
final class NonFiniteTests: XCTestCase {
    static let root = ClassifierTests.root
    static let weights = ClassifierTests.weights
    static let plane = ModelInput.shape.reduce(1, *)

    private func input() throws -> Tensor {
        try NPY.read(path: Self.root.appendingPathComponent("Tests/Fixtures/inputs/random-b7.npy").path)
    }

    /// Samples 0..<3 of random-b7 with sample `bad` changed by `edit` (NCHW).
    private func three(bad: Int, _ edit: (inout ArraySlice<Float>) -> Void) throws -> Tensor {
        var data = Array(try input().data[0..<3 * Self.plane])
        var slice = data[bad * Self.plane..<(bad + 1) * Self.plane]
        edit(&slice)
        data.replaceSubrange(bad * Self.plane..<(bad + 1) * Self.plane, with: slice)
        return Tensor(shape: [3] + ModelInput.shape, data: data)
    }

    func testANaNSampleIsRefusedByPositionAndTheOthersAreStillClassified() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights, maxBatch: 2)
        let clean = try classifier.classify(tensor: Tensor(shape: [3] + ModelInput.shape, data: Array(try input().data[0..<3 * Self.plane])))
        // Channel 2, row 5, column 7 of sample 1, in PyTorch's layout.
        let offset = 2 * 112 * 112 + 5 * 112 + 7
        let tensor = try three(bad: 1) { $0[$0.startIndex + offset] = .nan }
        let each = try classifier.classifyEach(tensor: tensor)
        XCTAssertEqual(each.count, 3)
        XCTAssertEqual(try each[0].get(), clean[0])
        XCTAssertEqual(try each[2].get(), clean[2])
        XCTAssertThrowsError(try each[1].get()) { error in
            XCTAssertEqual(error as? ClassifierError, .nonFiniteInput(sample: 1, channel: 2, y: 5, x: 7))
        }
        // The same position is named for the channel-last layout, and the throwing call throws it.
        let last = try classifier.classifyEach(channelsLast: tensor.channelsLast())
        XCTAssertEqual(try last[0].get(), clean[0])
        XCTAssertThrowsError(try last[1].get()) { error in
            XCTAssertEqual(error as? ClassifierError, .nonFiniteInput(sample: 1, channel: 2, y: 5, x: 7))
        }
        XCTAssertThrowsError(try classifier.classify(tensor: tensor)) { error in
            XCTAssertEqual("\(error)", "input sample 1: input value at channel 2, row 5, column 7 is NaN or infinite; inputs must be finite normalised values")
        }
    }

    func testInfinityIsRefusedToo() throws {
        let classifier = try FERClassifier(contentsOf: Self.weights)
        let tensor = try three(bad: 0) { $0[$0.endIndex - 1] = -.infinity }
        XCTAssertThrowsError(try classifier.classify(tensor: tensor)) { error in
            XCTAssertEqual(error as? ClassifierError, .nonFiniteInput(sample: 0, channel: 2, y: 111, x: 111))
        }
    }

    /// Finite values far outside the normalised range overflow inside the network: that sample is
    /// an error, never a result with NaN in it.
    func testFiniteInputsThatOverflowTheNetworkAreAnErrorForThatSampleOnly() throws {
        for path in [Self.weights, Self.root.appendingPathComponent("Tests/Fixtures/models/lfn/model.pth").path] {
            let classifier = try FERClassifier(contentsOf: path)
            let tensor = try three(bad: 2) { slice in
                for i in slice.indices { slice[i] = slice[i] < 0 ? -Float.greatestFiniteMagnitude : .greatestFiniteMagnitude }
            }
            let each = try classifier.classifyEach(tensor: tensor)
            XCTAssertNoThrow(try each[0].get(), path)
            XCTAssertNoThrow(try each[1].get(), path)
            XCTAssertThrowsError(try each[2].get(), path) { error in
                XCTAssertEqual(error as? ClassifierError, .nonFiniteOutput(sample: 2))
                XCTAssertTrue("\(error)".hasPrefix("input sample 2: the model's outputs are NaN or infinite"), "\(error)")
            }
        }
    }
}
