import FERCheckpoint
import FEREngine
import FERTensor
import Foundation
import XCTest

/// The fused engine against PyTorch: every fixture checkpoint, every input batch.
final class EngineFixtureTests: XCTestCase {
    func testEveryCheckpointFormAndModelMatchesPyTorchAtBatchSizes1_2_7() throws {
        let cases = try Fixtures.checkpoints()
        XCTAssertEqual(cases.filter { $0.expected != nil }.count, 14, "fixture checkpoints missing")
        for c in cases {
            guard let expected = c.expected else { continue }
            let model = try FERModel(contentsOf: c.path)
            let embedding = !model.isClassifier
            for input in Fixtures.inputs {
                let prediction = try model.predict(try Fixtures.input(input))
                let label = "\(c.form) \(input)"
                assertMatchesPyTorch(prediction.outputs, try Fixtures.expected(expected, input, embedding ? "embedding" : "logits"),
                                     embedding: embedding, label)
                let featureMap = try Fixtures.expected(expected, input, "featuremap")
                XCTAssertEqual(prediction.featureMap.shape, featureMap.shape, label)
                XCTAssertLessThanOrEqual(relativeError(prediction.featureMap, featureMap), 1e-4, "\(label) featuremap")
                if !embedding {
                    XCTAssertLessThanOrEqual(relativeError(prediction.pooledFeatures, try Fixtures.expected(expected, input, "pooled")), 1e-4,
                                             "\(label) pooled")
                }
            }
        }
    }

    func testRecognisesEachArchitectureFromItsKeysAlone() throws {
        let expected: [String: Architecture] = [
            "lfnsb7-bare": .lfnsb(classes: 7), "lfnsb8": .lfnsb(classes: 8), "lfn": .lfn, "mfn": .mfn,
            "ddamnet7-2heads": .ddamnet(classes: 7, heads: 2), "ddamnet8-1head": .ddamnet(classes: 8, heads: 1),
        ]
        for c in try Fixtures.checkpoints() {
            guard let architecture = expected[c.form] else { continue }
            XCTAssertEqual(try FERModel(contentsOf: c.path).architecture, architecture, c.form)
        }
    }

    func testFusedFileGivesIdenticalOutputs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-fused-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for c in try Fixtures.checkpoints() where ["lfnsb7-bare", "lfn", "mfn", "ddamnet8-1head"].contains(c.form) {
            let original = try FERModel(contentsOf: c.path)
            let path = dir.appendingPathComponent("\(c.form).safetensors").path
            try FusedModelFile.write(original, to: path)
            let fused = try FERModel(contentsOf: path)
            XCTAssertEqual(fused.architecture, original.architecture)
            let input = try Fixtures.input("random-b2")
            XCTAssertEqual(try fused.predict(input).outputs, try original.predict(input).outputs, c.form)
        }
    }

    func testEveryStageMatchesAndTheFirstDriftingStageIsNamed() throws {
        let input = try Fixtures.input("random-b1")
        for c in try Fixtures.checkpoints() where ["lfnsb7-bare", "lfn", "mfn", "ddamnet7-2heads"].contains(c.form) {
            let model = try FERModel(contentsOf: c.path)
            let expected = c.expected!
            let report = try StageComparison.compare(model, input: input, expected: { Fixtures.stage(expected, $0) })
            XCTAssertGreaterThanOrEqual(report.compared.count, 9, "\(c.form): stages compared \(report.compared)")
            XCTAssertNil(report.firstDrift, "\(c.form): \(report)")

            // Break one block of stage 5: the report must name features.5, not earlier stages.
            var broken = FoldedParameters(architecture: model.folded.architecture)
            for name in model.folded.names {
                var t = model.folded.tensor(name)!
                if name == "features.5.3.project.bias" { t.data = t.data.map { $0 + 0.5 } }
                try broken.add(name, t)
            }
            let drift = try StageComparison.compare(try FERModel(folded: broken, graph: model.graph), input: input, expected: { Fixtures.stage(expected, $0) })
            let stage5 = ["lfn": "conv_4", "mfn": "conv_4"][c.form] ?? "features.5"
            XCTAssertEqual(drift.firstDrift?.stage, stage5, "\(c.form): \(drift)")
        }
    }

    func testStrictLoadingListsMissingUnexpectedAndMisshapenKeysInOneError() throws {
        let checkpoint = try Checkpoint.load(path: Fixtures.root.appendingPathComponent("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth").path)
        var tensors = checkpoint.tensors.map { t in (name: t.name, tensor: RawTensor(shape: t.shape, values: { try t.floats() })) }
        tensors.removeAll { $0.name == "features.4.CA.conv2.bias" }
        tensors.append((name: "features.9.extra", tensor: RawTensor(shape: [3], values: { [1, 2, 3] })))
        let i = tensors.firstIndex { $0.name == "fc.bias" }!
        tensors[i] = (name: "fc.bias", tensor: RawTensor(shape: [6], values: { [Float](repeating: 0, count: 6) }))
        XCTAssertThrowsError(try FERModel(stateDict: tensors)) { error in
            guard case .weightMismatch(_, let missing, let unexpected, let shapes) = error as? EngineError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(missing, ["features.4.CA.conv2.bias [192]"])
            XCTAssertEqual(unexpected, ["features.9.extra"])
            XCTAssertEqual(shapes, ["fc.bias: checkpoint [6], expected [7]"])
        }
    }

    func testUnusedPublishedParametersAreIgnoredButForeignKeysAreNot() throws {
        let checkpoint = try Checkpoint.load(path: Fixtures.root.appendingPathComponent("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth").path)
        let names = Set(checkpoint.tensors.map(\.name))
        XCTAssertTrue(names.contains("bn.running_var"), "LFNSB's unused BatchNorm1d is in the checkpoint")
        XCTAssertNoThrow(try FERModel(checkpoint: checkpoint))
    }

    func testBatchOfOneEqualsTheSameSampleInsideABatch() throws {
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth").path)
        let batch = try Fixtures.input("random-b7")
        let all = try model.predict(batch).outputs
        for i in [0, 3, 6] {
            let one = try model.predict(batch.slice(i)).outputs
            XCTAssertLessThanOrEqual(relativeError(one, all.slice(i)), 1e-5)
        }
    }
}
