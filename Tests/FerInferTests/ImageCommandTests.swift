import FERTensor
import Foundation
import XCTest

/// `fer-infer IMAGE...` end to end: real photos against the PyTorch pipeline (reference model,
/// PIL + torchvision transform), and every kind of bad input with its message and exit status.
final class ImageCommandTests: XCTestCase {
    let sample = ".downloads/samples/Tom_Hanks_54745.png"
    let astronaut = "../shared/data/images/astronaut.png"

    private func requireFiles(_ paths: [String]) throws {
        for path in paths where !FileManager.default.fileExists(atPath: CLI.root.appendingPathComponent(path).path) {
            throw XCTSkip("\(path) is missing: run tools/setup (sample image) and keep ../shared beside the checkout")
        }
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-cli-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testPhotosGiveThePyTorchPipelinesLogitsAndLabels() throws {
        try requireFiles([sample, astronaut])
        // --no-detect: the whole photo resized to 112x112, as the authors' evaluation transform does.
        let result = try CLI.run(["--json", "--no-detect", sample, astronaut])
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try XCTUnwrap(result.json["results"] as? [[String: Any]])
        XCTAssertEqual(records.map { $0["input"] as? String }, [sample, astronaut])
        // images-b2 holds exactly these two photos through PIL resize + ToTensor + Normalize.
        let expected = try NPY.read(path: CLI.root.appendingPathComponent("Tests/Fixtures/expected/lfnsb7/images-b2.logits.npy").path)
        let scale = Double(expected.data.map { abs($0) }.max()!)
        for (i, record) in records.enumerated() {
            let logits = try XCTUnwrap(record["logits"] as? [Double])
            let want = expected.data[i * 7..<(i + 1) * 7].map(Double.init)
            XCTAssertLessThanOrEqual(zip(logits, want).map { abs($0 - $1) }.max()!, 1e-4 * scale)
            XCTAssertEqual(record["index"] as? Int, want.firstIndex(of: want.max()!))
            XCTAssertEqual((record["labels"] as? [String])?.count, 7)
            XCTAssertNotNil((record["timing_ms"] as? [String: Double])?["inference"])
            XCTAssertEqual(record["probability"] as? Double, (record["probabilities"] as? [Double])?.max())
        }
        XCTAssertTrue(result.stderr.contains("astronaut.png: note: image is 512x512"), result.stderr)
        XCTAssertFalse(result.stderr.contains("Tom_Hanks"), "a 112x112 crop gets no note")
    }

    func testBatchesAndThreadsGiveTheSameResultsAsOneByOne() throws {
        try requireFiles([sample, astronaut])
        let dir = "Tests/Fixtures/images/inputs"
        let one = try CLI.run(["--json", "--no-detect", "--batch", "1", dir])
        let many = try CLI.run(["--json", "--no-detect", "--batch", "7", "--threads", "2", dir])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(many.status, 0, many.stderr)
        let logits = { (r: CLI.Result) in (r.json["results"] as? [[String: Any]] ?? []).map { $0["logits"] as? [Double] ?? [] } }
        XCTAssertGreaterThan(logits(one).count, 30, "every image of the directory is classified")
        for (a, b) in zip(logits(one), logits(many)) {
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        }
    }

    func testTopKAndLabelSets() throws {
        try requireFiles([sample])
        let top3 = try CLI.run(["--top-k", "3", "--labels", "affectnet7", sample])
        XCTAssertEqual(top3.status, 0, top3.stderr)
        XCTAssertEqual(top3.stdout.components(separatedBy: ", ").count, 3, top3.stdout)
        let affectnet7 = ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"]
        XCTAssertTrue(affectnet7.contains { top3.stdout.contains("\(sample): \($0) ") }, top3.stdout)

        let dir = try temporaryDirectory()
        let file = dir.appendingPathComponent("labels.txt")
        try "a\nb\nc\nd\ne\nf\ng\n".write(to: file, atomically: true, encoding: .utf8)
        let custom = try CLI.run(["--json", "--labels", file.path, sample])
        XCTAssertEqual((custom.json["results"] as? [[String: Any]])?.first?["labels"] as? [String], ["a", "b", "c", "d", "e", "f", "g"])

        let wrong = try CLI.run(["--labels", "affectnet8", sample])
        XCTAssertEqual(wrong.status, 2)
        XCTAssertTrue(wrong.stderr.contains("8 names but the model has 7 classes"), wrong.stderr)
    }

    /// Each bad input: one line on stderr naming the file and the problem, exit status 1, and the
    /// good input beside it still classified.
    func testEveryBadInputIsOneClearLineAndTheRestStillRuns() throws {
        try requireFiles([sample])
        let dir = try temporaryDirectory()
        let png = try Data(contentsOf: CLI.root.appendingPathComponent(sample))
        func write(_ name: String, _ data: Data) throws -> String {
            let url = dir.appendingPathComponent(name)
            try data.write(to: url)
            return url.path
        }
        var header = png.prefix(33)  // signature + IHDR
        header.replaceSubrange(16..<24, with: [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0] as [UInt8])  // 100000 x 100000
        let emptyDir = dir.appendingPathComponent("empty-folder")
        try FileManager.default.createDirectory(at: emptyDir, withIntermediateDirectories: true)
        let cases: [(path: String, message: String)] = [
            (dir.appendingPathComponent("missing.png").path, "no such file"),
            (emptyDir.path, "holds no .png or .jpg"),
            (try write("empty.png", Data()), "empty file"),
            (try write("notes.png", Data("just some text\n".utf8)), "not a PNG or JPEG image"),
            (try write("cut.png", png.prefix(png.count / 2)), "truncated PNG"),
            (try write("bomb.png", header + png.suffix(from: 33)), "too large"),
            (try write("cut.jpg", Data([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10]) + Data("JFIF".utf8)), "JPEG"),
        ]
        for c in cases {
            let result = try CLI.run([c.path, sample])
            XCTAssertEqual(result.status, 1, "\(c.path): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { $0.contains(c.path) }
            XCTAssertEqual(lines.count, 1, result.stderr)
            XCTAssertTrue(lines.first?.contains(c.message) ?? false, "\(c.message) not in: \(result.stderr)")
            XCTAssertTrue(result.stdout.contains(sample), "the good input is still classified")
        }
    }

    func testPixelLimitCanBeRaisedAndWrongExtensionsAreNoted() throws {
        try requireFiles([astronaut])
        let limited = try CLI.run(["--max-pixels", "1000", astronaut])
        XCTAssertEqual(limited.status, 1)
        XCTAssertTrue(limited.stderr.contains("over the limit of 1000"), limited.stderr)
        XCTAssertEqual(try CLI.run(["--max-pixels", "0", astronaut]).status, 0)
        let renamed = try CLI.run(["Tests/Fixtures/images/inputs/png-named-jpg-20x10.jpg"])
        XCTAssertEqual(renamed.status, 0, renamed.stderr)
        XCTAssertTrue(renamed.stderr.contains("does not match the content"), renamed.stderr)
    }

    func testNoInputsIsAUsageError() throws {
        let result = try CLI.run(["classify"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("no inputs"), result.stderr)
    }
}
