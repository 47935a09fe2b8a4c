import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The `fer-serve` binary itself: starts on 127.0.0.1, answers over real HTTP, and stops cleanly
/// (exit status 0) on SIGTERM.
final class ServeBinaryTests: XCTestCase {
    func testServesAndShutsDownGracefullyOnSIGTERM() async throws {
        let sample = CLI.root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png")
        guard let png = FileManager.default.contents(atPath: sample.path) else {
            throw XCTSkip("\(sample.path) is missing: run tools/setup")
        }
        let port = 30000 + Int(getpid() % 20000)
        let server = Process()
        server.executableURL = CLI.binary.deletingLastPathComponent().appendingPathComponent("fer-serve")
        server.arguments = ["--host", "127.0.0.1", "--port", "\(port)", "--workers", "1"]
        server.currentDirectoryURL = CLI.root
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }

        let base = URL(string: "http://127.0.0.1:\(port)")!
        try await waitUntilHealthy(base, port: port)

        var request = URLRequest(url: base.appendingPathComponent("v1/classify"))
        request.httpMethod = "POST"
        request.setValue("image/png", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.upload(for: request, from: png)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cli = try CLI.run([".downloads/samples/Tom_Hanks_54745.png"])
        XCTAssertTrue(cli.stdout.contains(": \(json["label"] as? String ?? "?") "), "\(cli.stdout) vs \(json)")

        kill(server.processIdentifier, SIGTERM)
        for _ in 0..<100 where server.isRunning { try await Task.sleep(nanoseconds: 50_000_000) }
        XCTAssertFalse(server.isRunning, "still running 5 s after SIGTERM")
        XCTAssertEqual(server.terminationStatus, 0)
    }

    /// One access-log line per request on stderr at the default level (method, path, status,
    /// duration, images or error); `FER_SERVE_LOG_LEVEL=warning` silences them; a bad level is a
    /// usage error.
    func testAccessLogFollowsTheLogLevel() async throws {
        let binary = CLI.binary.deletingLastPathComponent().appendingPathComponent("fer-serve")
        let bad = Process()
        bad.executableURL = binary
        bad.arguments = ["--log-level", "loud"]
        let badErrors = Pipe()
        bad.standardError = badErrors
        bad.standardOutput = FileHandle.nullDevice
        try bad.run()
        bad.waitUntilExit()
        XCTAssertNotEqual(bad.terminationStatus, 0)
        XCTAssertTrue(String(decoding: badErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).contains("--log-level must be one of"))

        for (environment, expectLines) in [([String: String](), true), (["FER_SERVE_LOG_LEVEL": "warning"], false)] {
            let port = 30000 + Int((getpid() + (expectLines ? 7 : 13)) % 20000)
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("fer-serve-log-\(getpid())-\(port).txt")
            XCTAssertTrue(FileManager.default.createFile(atPath: log.path, contents: nil))
            defer { try? FileManager.default.removeItem(at: log) }
            let server = Process()
            server.executableURL = binary
            server.arguments = ["--host", "127.0.0.1", "--port", "\(port)", "--workers", "1"]
            server.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            server.currentDirectoryURL = CLI.root
            server.standardOutput = FileHandle.nullDevice
            server.standardError = try FileHandle(forWritingTo: log)
            try server.run()
            defer { if server.isRunning { server.terminate() } }
            let base = URL(string: "http://127.0.0.1:\(port)")!
            try await waitUntilHealthy(base, port: port)
            let (_, wrong) = try await URLSession.shared.data(from: base.appendingPathComponent("v1/classify"))
            XCTAssertEqual((wrong as? HTTPURLResponse)?.statusCode, 405)
            kill(server.processIdentifier, SIGTERM)
            for _ in 0..<100 where server.isRunning { try await Task.sleep(nanoseconds: 50_000_000) }
            let text = String(decoding: try Data(contentsOf: log), as: UTF8.self)
            XCTAssertEqual(text.contains("GET /healthz 200"), expectLines, text)
            XCTAssertEqual(text.contains("GET /v1/classify 405"), expectLines, text)
            XCTAssertEqual(text.contains("error=GET is not allowed on /v1/classify: use POST"), expectLines, text)
        }
    }

    /// The banner comes once the server listens and names the port it got (`--port 0`: a free one);
    /// a port in use is one clear error, exit 1, with no banner before it.
    func testTheBannerNamesTheListeningPortAndABusyPortIsOneError() async throws {
        let binary = CLI.binary.deletingLastPathComponent().appendingPathComponent("fer-serve")
        let server = Process()
        server.executableURL = binary
        server.arguments = ["--host", "127.0.0.1", "--port", "0", "--workers", "1"]
        server.currentDirectoryURL = CLI.root
        server.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        server.standardError = errors
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        // The banner line, read off the pipe as it comes.
        let banner = await withCheckedContinuation { (done: CheckedContinuation<String, Never>) in
            DispatchQueue.global().async {
                var text = ""
                while !text.contains("workers, http://") || !text.hasSuffix("\n") {
                    let chunk = errors.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    text += String(decoding: chunk, as: UTF8.self)
                }
                done.resume(returning: text)
            }
        }
        let line = banner.split(separator: "\n").first { $0.contains("workers, http://") }
        let port = try XCTUnwrap(line?.components(separatedBy: "http://127.0.0.1:").last.flatMap { Int($0) }, banner)
        XCTAssertNotEqual(port, 0, banner)
        let base = URL(string: "http://127.0.0.1:\(port)")!
        try await waitUntilHealthy(base, port: port)

        let second = Process()
        second.executableURL = binary
        second.arguments = ["--host", "127.0.0.1", "--port", "\(port)", "--workers", "1"]
        second.currentDirectoryURL = CLI.root
        second.standardOutput = FileHandle.nullDevice
        let secondErrors = Pipe()
        second.standardError = secondErrors
        try second.run()
        let text = String(decoding: secondErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        second.waitUntilExit()
        XCTAssertEqual(second.terminationStatus, 1, text)
        XCTAssertTrue(text.contains("cannot listen on 127.0.0.1:\(port): Address already in use (choose another --port, 0 for a free one, or another --host)"), text)
        XCTAssertFalse(text.contains("workers, http://"), "no banner for a server that never listened: \(text)")
        kill(server.processIdentifier, SIGTERM)
        for _ in 0..<100 where server.isRunning { try await Task.sleep(nanoseconds: 50_000_000) }
    }

    /// Polls `/healthz` for up to 10 s until the server answers 200.
    private func waitUntilHealthy(_ base: URL, port: Int, file: StaticString = #filePath, line: UInt = #line) async throws {
        for _ in 0..<100 {
            if let (_, response) = try? await URLSession.shared.data(from: base.appendingPathComponent("healthz")),
               (response as? HTTPURLResponse)?.statusCode == 200 {
                return
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTFail("fer-serve did not come up on port \(port)", file: file, line: line)
    }
}
