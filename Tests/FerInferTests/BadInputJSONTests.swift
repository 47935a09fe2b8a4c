import FERTensor
import Foundation
import XCTest

/// `fer-infer` with one failing input among good ones, for every kind of failure: the good inputs'
/// results are still printed (as valid JSON with --json, where the bad one has an entry
/// `{"input", "error": {"message"}}` in its place), the bad one is one line on stderr naming it, and
/// the exit status is 1. NaN, infinity and finite values that overflow the network are
/// refused per sample, never printed as `nan`.
final class BadInputJSONTests: XCTestCase {
    let good = "Tests/Fixtures/inputs/random-b1.npy"
    static let plane = 3 * 112 * 112

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-bad-json-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// random-b2's two samples plus a third that is a copy of sample 0 changed by `edit`, written
    /// as `name` (`[3, 3, 112, 112]`, or `[3, 112, 112]` for just the edited sample with `batched` false).
    private func npy(_ name: String, batched: Bool = true, _ edit: (inout [Float]) -> Void) throws -> String {
        let b2 = try NPY.read(path: CLI.root.appendingPathComponent("Tests/Fixtures/inputs/random-b2.npy").path)
        var bad = Array(b2.data[0..<Self.plane])
        edit(&bad)
        let tensor = batched ? Tensor(shape: [3, 3, 112, 112], data: b2.data + bad) : Tensor(shape: [3, 112, 112], data: bad)
        let path = try temporaryDirectory().appendingPathComponent(name).path
        try NPY.write(tensor, to: path)
        return path
    }

    /// Runs `fer-infer --json ARGS`; checks exit 1, stdout is JSON whose results are `inputs` (input,
    /// sample) in order, the one shown as `failed` (`input` or `input[sample]`) an error entry with the
    /// stderr line as its message, and exactly one stderr line names `failed` and contains `message`.
    /// Returns the results that are not errors.
    @discardableResult
    private func checkJSON(_ arguments: [String], results inputs: [(String, Int?)], failed: String, message: String,
                           file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        let result = try CLI.run(["--json"] + arguments)
        XCTAssertEqual(result.status, 1, result.stderr, file: file, line: line)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        let records = try XCTUnwrap((object as? [String: Any])?["results"] as? [[String: Any]], result.stdout, file: file, line: line)
        XCTAssertEqual(records.map { "\($0["input"] as? String ?? "?")[\(($0["sample"] as? Int).map(String.init) ?? "-")]" },
                       inputs.map { "\($0.0)[\($0.1.map(String.init) ?? "-")]" }, file: file, line: line)
        let lines = result.stderr.split(separator: "\n").filter { $0.contains(failed) }
        XCTAssertEqual(lines.count, 1, result.stderr, file: file, line: line)
        XCTAssertTrue(lines.first?.contains(message) ?? false, "\(message) not in: \(result.stderr)", file: file, line: line)
        var results: [[String: Any]] = []
        for record in records {
            let shown = (record["sample"] as? Int).map { "\(record["input"] as? String ?? "?")[\($0)]" } ?? record["input"] as? String
            if let error = record["error"] as? [String: Any] {
                XCTAssertEqual(shown, failed, file: file, line: line)
                XCTAssertEqual(error["message"] as? String, lines.first.map { String($0.dropFirst("fer-infer: ".count)) }, file: file, line: line)
                XCTAssertEqual(record.count, record["sample"] == nil ? 2 : 3, "an error entry has no result fields: \(record)", file: file, line: line)
                continue
            }
            XCTAssertNotEqual(shown, failed, file: file, line: line)
            let probabilities = try XCTUnwrap(record["probabilities"] as? [Double], file: file, line: line)
            XCTAssertTrue(probabilities.allSatisfy(\.isFinite), file: file, line: line)
            results.append(record)
        }
        XCTAssertEqual(results.count, records.count - 1, "one error entry", file: file, line: line)
        return results
    }

    func testJSONWithAMissingFile() throws {
        let missing = try temporaryDirectory().appendingPathComponent("missing.png").path
        try checkJSON([missing, good], results: [(missing, nil), (good, 0)], failed: missing, message: "no such file")
    }

    func testJSONWithAFileThatIsNotAnImage() throws {
        let path = try temporaryDirectory().appendingPathComponent("notes.png")
        try Data("just some text\n".utf8).write(to: path)
        try checkJSON([good, path.path], results: [(good, 0), (path.path, nil)], failed: path.path, message: "not a PNG or JPEG image")
    }

    func testJSONWithAnNPYOfTheWrongShape() throws {
        let path = try temporaryDirectory().appendingPathComponent("wrong.npy").path
        try NPY.write(Tensor(shape: [2, 3, 8, 8]), to: path)
        try checkJSON([path, good], results: [(path, nil), (good, 0)], failed: path, message: "array has shape [2, 3, 8, 8], expected")
    }

    /// The NaN sample sits in one forward pass with good samples of its own file and of the next one.
    func testJSONWithANaNSampleReportsEveryOtherSample() throws {
        let offset = 1 * 112 * 112 + 2 * 112 + 3  // channel 1, row 2, column 3
        let path = try npy("nan.npy") { $0[offset] = .nan }
        let records = try checkJSON([path, good], results: [(path, 0), (path, 1), (path, 2), (good, 0)], failed: "\(path)[2]",
                                    message: "\(path)[2]: input value at channel 1, row 2, column 3 is NaN or infinite")
        // The good samples' results are the ones they get alone.
        let alone = try CLI.run(["--json", "Tests/Fixtures/inputs/random-b2.npy"])
        let want = (alone.json["results"] as? [[String: Any]])?.map { $0["logits"] as? [Double] ?? [] }
        XCTAssertEqual(records.prefix(2).map { $0["logits"] as? [Double] ?? [] }, want)
    }

    func testTextWithANaNSamplePrintsNoNaNAndExits1() throws {
        let path = try npy("bad.npy") { $0[0] = .nan }
        let result = try CLI.run([path, good])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertFalse(result.stdout.lowercased().contains("nan"), result.stdout)
        XCTAssertEqual(result.stdout.split(separator: "\n").map { $0.split(separator: ":")[0] }, ["\(path)[0]", "\(path)[1]", "\(good)[0]"])
        XCTAssertTrue(result.stderr.contains("\(path)[2]: input value at channel 0, row 0, column 0 is NaN or infinite"), result.stderr)
    }

    func testJSONWithAnInfiniteValueInAnUnbatchedArrayNamesTheFile() throws {
        let path = try npy("inf.npy", batched: false) { $0[$0.count - 1] = .infinity }
        try checkJSON([good, path], results: [(good, 0), (path, nil)], failed: path,
                      message: "\(path): input value at channel 2, row 111, column 111 is NaN or infinite")
    }

    /// Finite values far outside the normalised range: the network's outputs overflow for that
    /// sample alone, which is an error naming it, not a result with NaN in it.
    func testJSONWithFiniteValuesThatOverflowTheNetwork() throws {
        let path = try npy("huge.npy") { values in
            for i in values.indices { values[i] = values[i] < 0 ? -Float.greatestFiniteMagnitude : .greatestFiniteMagnitude }
        }
        try checkJSON([path, good], results: [(path, 0), (path, 1), (path, 2), (good, 0)], failed: "\(path)[2]",
                      message: "\(path)[2]: the model's outputs are NaN or infinite")
    }

    /// A failure read while earlier inputs still wait in a batch keeps its place: entries follow the
    /// command line, whatever order the work finished in; a folder without images is an entry too.
    func testJSONEntriesFollowTheInputOrderAcrossBatchesAndPhotos() throws {
        let dir = try temporaryDirectory()
        let broken = dir.appendingPathComponent("broken.png").path
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: broken))
        let empty = dir.appendingPathComponent("empty")  // a folder without images fails as one input
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let b2 = "Tests/Fixtures/inputs/random-b2.npy"
        let result = try CLI.run(["--json", "--batch", "8", b2, broken, good, empty.path, b2])
        XCTAssertEqual(result.status, 1, result.stderr)
        let records = try XCTUnwrap(result.json["results"] as? [[String: Any]], result.stdout)
        let shown = records.map { record in
            (record["error"] != nil ? "error " : "") + "\(record["input"] as? String ?? "?")" + ((record["sample"] as? Int).map { "[\($0)]" } ?? "")
        }
        XCTAssertEqual(shown, ["\(b2)[0]", "\(b2)[1]", "error \(broken)", "\(good)[0]", "error \(empty.path)"]
                       + ["\(b2)[0]", "\(b2)[1]"], result.stdout)
    }
}
