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
        var healthy = false
        for _ in 0..<100 where !healthy {
            if let (_, response) = try? await URLSession.shared.data(from: base.appendingPathComponent("healthz")),
               (response as? HTTPURLResponse)?.statusCode == 200 {
                healthy = true
            } else {
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        XCTAssertTrue(healthy, "fer-serve did not come up on port \(port)")

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
}
