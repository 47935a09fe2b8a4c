import FERTensor
import Foundation
import XCTest

final class ClassifyCommandTests: XCTestCase {
    let rafdb = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]

    func testJSONForANormalisedNPYBatchMatchesPyTorch() throws {
        let result = try CLI.run(["classify", "--json", "Tests/Fixtures/inputs/random-b2.npy"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try XCTUnwrap(result.json["results"] as? [[String: Any]])
        XCTAssertEqual(records.count, 2)
        let expected = try NPY.read(path: CLI.root.appendingPathComponent("Tests/Fixtures/expected/lfnsb7/random-b2.logits.npy").path)
        for (i, record) in records.enumerated() {
            XCTAssertEqual(record["sample"] as? Int, i)
            let logits = try XCTUnwrap(record["logits"] as? [Double])
            let want = expected.data[i * 7..<(i + 1) * 7].map(Double.init)
            for (a, b) in zip(logits, want) { XCTAssertEqual(a, b, accuracy: 1e-3) }
            let probabilities = try XCTUnwrap(record["probabilities"] as? [Double])
            XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-5)
            let top = want.firstIndex(of: want.max()!)!
            XCTAssertEqual(record["index"] as? Int, top)
            XCTAssertEqual(record["label"] as? String, rafdb[top])
        }
    }

    func testDefaultSubcommandAndModelPrintOneLinePerSample() throws {
        let result = try CLI.run(["Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        XCTAssertTrue(rafdb.contains { lines[0].contains($0) }, String(lines[0]))
    }

    func testEmbeddingModelPrintsUnitEmbeddings() throws {
        let result = try CLI.run(["classify", "--json", "--model", "Tests/Fixtures/models/lfn/model.pth", "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let record = try XCTUnwrap((result.json["results"] as? [[String: Any]])?.first)
        let embedding = try XCTUnwrap(record["embedding"] as? [Double])
        XCTAssertEqual(embedding.count, 256)
        XCTAssertEqual(embedding.map { $0 * $0 }.reduce(0, +), 1, accuracy: 1e-4)
    }

    func testMissingInputFailsWithExitStatus1AndNamesTheFile() throws {
        let result = try CLI.run(["classify", "Tests/Fixtures/inputs/random-b1.npy", "no/such/input.npy"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("no/such/input.npy"), result.stderr)
        XCTAssertEqual(result.stdout.split(separator: "\n").count, 1, "the good input is still classified")
    }

    func testUsageErrorsExitWithStatus2() throws {
        let result = try CLI.run(["classify", "--top-k", "0", "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertTrue(result.stderr.contains("--top-k"), result.stderr)
    }

    func testABrokenModelFileIsOneClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fer-broken-\(getpid()).pth").path
        try Data("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 123\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try CLI.run(["classify", "--model", path, "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains(path), result.stderr)
        XCTAssertTrue(result.stderr.lowercased().contains("lfs"), result.stderr)
    }

    func testFusedExportClassifiesIdentically() throws {
        let fused = FileManager.default.temporaryDirectory.appendingPathComponent("fer-fused-cli-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: fused) }
        let export = try CLI.run(["export", "weights/lfnsb7-seeded.pth", fused])
        XCTAssertEqual(export.status, 0, export.stderr)
        let a = try CLI.run(["classify", "--json", "Tests/Fixtures/inputs/random-b2.npy"])
        let b = try CLI.run(["classify", "--json", "--model", fused, "Tests/Fixtures/inputs/random-b2.npy"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let logits = { (r: CLI.Result) in (r.json["results"] as? [[String: Any]])?.compactMap { $0["logits"] as? [Double] } }
        XCTAssertEqual(logits(a), logits(b))
        XCTAssertNotNil(logits(a))
    }
}

final class InspectCommandTests: XCTestCase {
    func testInspectNamesFormatStructureArchitectureAndEveryTensor() throws {
        let result = try CLI.run(["inspect", "weights/lfnsb7-seeded.pth"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("format: zip"), result.stdout)
        XCTAssertTrue(result.stdout.contains("structure: authors' training dict (model_state_dict)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("architecture: LFNSB (7 classes)"), result.stdout)
        let tensorLines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("  features.") || $0.hasPrefix("  sb.") || $0.hasPrefix("  fc.") || $0.hasPrefix("  bn.") }
        XCTAssertEqual(tensorLines.count, 900)
    }

    func testRawExportKeepsNamesDtypesAndValues() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fer-raw-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let export = try CLI.run(["export", "--raw", "Tests/Fixtures/checkpoints/lfnsb7-float16/model.pth", out])
        XCTAssertEqual(export.status, 0, export.stderr)
        let inspect = try CLI.run(["inspect", out])
        XCTAssertTrue(inspect.stdout.contains("format: safetensors"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("float16"), inspect.stdout)
        // The raw file is still a checkpoint the engine runs, with the float16 model's outputs.
        let a = try CLI.run(["classify", "--json", "--model", out, "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let logits = try XCTUnwrap(((a.json["results"] as? [[String: Any]])?.first?["logits"]) as? [Double])
        let expected = try NPY.read(path: CLI.root.appendingPathComponent("Tests/Fixtures/expected/lfnsb7-float16/random-b1.logits.npy").path)
        for (x, y) in zip(logits, expected.data) { XCTAssertEqual(x, Double(y), accuracy: 1e-3) }
    }
}
