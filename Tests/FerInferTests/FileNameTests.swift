import Foundation
import XCTest

/// Linux file names are bytes: names that are not UTF-8 are listed, opened and reported (escaped
/// as `\xNN`) like any other, whether found in a directory or named on the command line.
final class FileNameTests: XCTestCase {
    private var directory: String!

    /// Creates `name` (raw bytes) in the test directory holding `contents`.
    private func create(_ name: [UInt8], _ contents: Data) throws {
        let path = Array(directory.utf8) + [UInt8(ascii: "/")] + name + [0]
        let fd = path.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        }
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = contents.withUnsafeBytes { write(fd, $0.baseAddress, contents.count) }
        close(fd)
    }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fer-names-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let png = try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/images/inputs/grey-40x30.png"))
        let jpg = try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/images/inputs/jpeg-420-75x51.jpg"))
        try create(Array("a.png".utf8), png)
        try create([UInt8(ascii: "b"), 0xE9] + Array(".png".utf8), png)  // Latin-1 e-acute
        try create([UInt8(ascii: "c"), 0xFF] + Array(".jpg".utf8), jpg)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func testADirectoryWithNamesThatAreNotUTF8ClassifiesEveryImage() throws {
        let result = try CLI.run(["--json", directory])
        XCTAssertEqual(result.status, 0, result.stderr)
        let inputs = (result.json["results"] as? [[String: Any]] ?? []).compactMap { $0["input"] as? String }
        XCTAssertEqual(inputs, ["\(directory!)/a.png", "\(directory!)/b\\xe9.png", "\(directory!)/c\\xff.jpg"])
    }

    /// A name holding a newline or an escape sequence cannot split a line of output or drive the
    /// terminal: shown with `\xNN`, as bytes that are not UTF-8 are.
    func testControlCharactersInNamesAreEscapedInTextOutputAndMessages() throws {
        let png = try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/images/inputs/rgb-112x112.png"))
        let sub = directory + "/controls"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: sub + "/new\nline.png", contents: png)
        FileManager.default.createFile(atPath: sub + "/\u{1B}[31mred.png", contents: Data("not an image".utf8))
        let result = try CLI.run([sub])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stdout.split(separator: "\n", omittingEmptySubsequences: false).count, 2, result.stdout)
        XCTAssertTrue(result.stdout.hasPrefix("\(sub)/new\\x0aline.png: "), result.stdout)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("\(sub)/\\x1b[31mred.png: not a PNG or JPEG image"), result.stderr)
        XCTAssertFalse(result.stderr.contains("\u{1B}"), result.stderr)
    }

    func testANameThatIsNotUTF8CanBeGivenOnTheCommandLine() throws {
        // Foundation passes arguments as Strings; the shell builds the raw bytes.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", #"exec "$0" "$(printf '%s/b\351.png' "$1")" "$(printf '%s/missing\351.png' "$1")""#,
                             CLI.binary.path, directory]
        process.currentDirectoryURL = CLI.root
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, "one input is missing: \(stderr)")
        XCTAssertTrue(stdout.hasPrefix("\(directory!)/b\\xe9.png: "), stdout)
        XCTAssertTrue(stderr.contains("\(directory!)/missing\\xe9.png: no such file"), stderr)
    }
}
