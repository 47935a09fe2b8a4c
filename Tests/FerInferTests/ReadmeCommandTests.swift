import FERImage
import Foundation
import XCTest

/// The README's first command, as a newcomer types it: the group photo's six faces found, aligned
/// and classified, one line each, and the annotated picture written.
final class ReadmeCommandTests: XCTestCase {
    /// The `fer-infer` arguments of the README's first command (`tools/setup && swift run -c release fer-infer ...`).
    private func firstCommandArguments() throws -> [String] {
        let readme = try String(contentsOf: CLI.root.appendingPathComponent("README.md"), encoding: .utf8)
        let prefix = "tools/setup && swift run -c release fer-infer "
        let line = try XCTUnwrap(readme.split(separator: "\n").first { $0.hasPrefix(prefix) }, "no first command in the README")
        XCTAssertFalse(line.contains("'") || line.contains("\""), "the command is split on spaces here: \(line)")
        return line.dropFirst(prefix.count).split(separator: " ").map(String.init)
    }

    func testTheFirstCommandAnalysesTheGroupPhotoAndDrawsIt() throws {
        var arguments = try firstCommandArguments()
        let photo = try XCTUnwrap(arguments.last)
        guard FileManager.default.fileExists(atPath: CLI.root.appendingPathComponent(photo).path) else {
            throw XCTSkip("\(photo) is missing: run tools/setup")
        }
        // Its output folder, moved out of the source tree.
        let annotate = try XCTUnwrap(arguments.firstIndex(of: "--annotate"), "the first command draws its result: \(arguments)")
        let folder = arguments[annotate + 1]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-readme-\(getpid())-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        arguments[annotate + 1] = dir.path
        let result = try CLI.run(arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 6, result.stdout)
        for (k, line) in lines.enumerated() { XCTAssertTrue(line.hasPrefix("\(photo) face \(k + 1) ("), String(line)) }
        let stem = URL(fileURLWithPath: photo).deletingPathExtension().lastPathComponent
        let drawn = try ImageDecoder.decode(path: dir.appendingPathComponent(stem + ".png").path).image
        let original = try ImageDecoder.decode(path: CLI.root.appendingPathComponent(photo).path).image
        XCTAssertEqual([drawn.width, drawn.height], [original.width, original.height])
        XCTAssertNotEqual(drawn.pixels, original.pixels, "the faces are drawn")
        let readme = try String(contentsOf: CLI.root.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertTrue(readme.contains("(drawn as \(folder)/\(stem).png)"), "the README says where the picture goes")
    }
}
