import Foundation
import XCTest

/// The example package under Examples/ builds against this package by path and classifies like
/// `fer-infer` does.
final class ExampleTests: XCTestCase {
    func testExamplePackageBuildsAndAgreesWithTheCLI() throws {
        let sample = ".downloads/samples/Tom_Hanks_54745.png"
        guard FileManager.default.fileExists(atPath: CLI.root.appendingPathComponent(sample).path) else {
            throw XCTSkip("\(sample) is missing: run tools/setup")
        }
        let swift = try XCTUnwrap(["/opt/swift/usr/bin/swift", "/usr/bin/swift"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map { "\($0)/swift" }
                .first { FileManager.default.isExecutableFile(atPath: $0) })
        let run = Process()
        run.executableURL = URL(fileURLWithPath: swift)
        run.arguments = ["run", "-c", "release", "--package-path", "Examples", "classify-example", sample, sample]
        run.currentDirectoryURL = CLI.root
        let out = Pipe(), err = Pipe()
        run.standardOutput = out
        run.standardError = err
        try run.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        XCTAssertEqual(run.terminationStatus, 0, errors.suffix(2000).description)
        let cli = try CLI.run([sample])
        let expected = cli.stdout.trimmingCharacters(in: .whitespacesAndNewlines)   // "<path>: Label 0.438"
        XCTAssertEqual(output.split(separator: "\n").map(String.init), [expected, expected])
    }
}
