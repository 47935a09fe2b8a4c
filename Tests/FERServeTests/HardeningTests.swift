import FERRuntime
import FERServe
import Foundation
import Hummingbird
import Logging
import XCTest

extension Result where Failure == any Error {
    init(asyncCatching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Issue 10 ("Hardening"), over real HTTP on 127.0.0.1 with raw sockets: multipart boundaries,
/// methods, per-request limits, worker saturation and slow clients. Every loop here is bounded in
/// count and time.
final class HardeningTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func png() throws -> [UInt8] {
        let path = Self.root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png").path
        guard let data = FileManager.default.contents(atPath: path) else { throw XCTSkip("\(path) is missing: run tools/setup") }
        return [UInt8](data)
    }

    /// Runs a service with `configure`d settings on a free port until `body` returns.
    private func withService<T: Sendable>(_ configure: (inout ServerSettings) -> Void = { _ in },
                                          beforeEachImage: (@Sendable (String) -> Void)? = nil,
                                          _ body: @escaping @Sendable (Int) async throws -> T) async throws -> T {
        try await withLoopbackService(configure, beforeEachImage: beforeEachImage) { _, port in try await body(port) }
    }

    func testBoundaryLongerThan70CharactersIsRefusedAtOnce() async throws {
        let png = try png()
        try await withService { port in
            // The attack from the issue: a 60,000-character boundary and 300 KB of near-matches.
            let boundary = String(repeating: "a", count: 60_000)
            let nearMiss = Array("--\(boundary.dropLast())b".utf8)
            var attack = [UInt8]()
            while attack.count < 300_000 { attack += nearMiss }
            let body = attack
            let start = DispatchTime.now().uptimeNanoseconds
            let response = try await offPool {
                try RawConnection.request(port: port, "POST", "/v1/classify",
                                          headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"], body: body)
            }
            XCTAssertEqual(response.status, 400)
            XCTAssertTrue(response.errorMessage.contains("60000 bytes long; RFC 2046 allows at most 70"), response.errorMessage)
            XCTAssertLessThan(secondsSince(start), 1.0)
            // 70 is the limit itself: accepted; 71 is not.
            for (length, status) in [(70, 200), (71, 400)] {
                let boundary = String(repeating: "Z", count: length)
                let response = try await offPool {
                    try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"],
                                              body: multipart(boundary, [("form-data; name=\"image\"; filename=\"face.png\"", "image/png", png)]))
                }
                XCTAssertEqual(response.status, status, "boundary of \(length): \(response.errorMessage)")
            }
        }
    }

    func testMixedCaseBoundariesTextFieldsAndNearMissContentAreParsed() async throws {
        let png = try png()
        try await withService { port in
            // RFC 7578's example boundary, a text field beside the file, a browser-style boundary, and
            // RFC 2046's quoted boundary with a space.
            for boundary in ["AaB03x", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "simple boundary"] {
                let body = multipart(boundary, [
                    ("form-data; name=\"field1\"", nil, Array("Joe Blow\r\n--\(boundary.dropLast())".utf8)),
                    ("form-data; name=\"pics\"; filename=\"Face One.png\"", "image/png", png),
                    ("form-data; name=\"note\"", "text/plain", Array("almost --\(boundary)x".utf8)),
                    ("form-data; name=\"raw\"", "application/octet-stream", png),
                ])
                let response = try await offPool {
                    try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "multipart/form-data; boundary=\"\(boundary)\""], body: body)
                }
                XCTAssertEqual(response.status, 200, "\(boundary): \(response.errorMessage)")
                let results = response.json["results"] as? [[String: Any]] ?? []
                XCTAssertEqual(results.map { $0["input"] as? String }, ["Face One.png", "raw"], boundary)
                XCTAssertEqual(results.first?["label"] as? String, results.last?["label"] as? String)
            }
            // Unquoted, as curl and browsers send it.
            let body = multipart("AaB03x", [("form-data; name=\"image\"; filename=\"a.png\"", "image/png", png)])
            let unquoted = try await offPool {
                try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "Multipart/Form-Data; Boundary=AaB03x"], body: body)
            }
            XCTAssertEqual(unquoted.status, 200, unquoted.errorMessage)
            // Only text fields: the error names them.
            let fieldsOnly = multipart("AaB03x", [("form-data; name=\"field1\"", nil, Array("Joe Blow".utf8)), ("form-data; name=\"id\"", nil, [0x31])])
            let response = try await offPool {
                try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "multipart/form-data; boundary=AaB03x"], body: fieldsOnly)
            }
            XCTAssertEqual(response.status, 400)
            XCTAssertTrue(response.errorMessage.contains("no file part (fields ignored: field1, id)"), response.errorMessage)
        }
    }

    func testBodyWithoutItsClosingDelimiterIsRefused() async throws {
        let png = try png()
        try await withService { port in
            let parts: [(disposition: String, type: String?, bytes: [UInt8])] = [
                ("form-data; name=\"image\"; filename=\"one.png\"", "image/png", png),
                ("form-data; name=\"image\"; filename=\"two.png\"", "image/png", png),
            ]
            let full = multipart("b0und", parts)
            let cases: [(String, [UInt8], Int, String)] = [
                ("complete, with an epilogue", full + Array("epilogue text\r\n".utf8), 200, ""),
                ("second part cut off", Array(full.dropLast("\r\n--b0und--\r\n".utf8.count + 100)), 400, "part 2 has no closing delimiter"),
                ("second part not closed", Array(full.dropLast("\r\n--b0und--\r\n".utf8.count)), 400, "part 2 has no closing delimiter"),
                ("delimiter without --", multipart("b0und", parts, closing: "--b0und\r\n"), 400, "no closing delimiter"),
                ("delimiter at the very end", multipart("b0und", parts, closing: "--b0und"), 400, "no closing delimiter"),
                ("boundary never found", Array("--other\r\n\r\nxyz\r\n--other--\r\n".utf8), 400, "not found"),
            ]
            for (name, body, status, message) in cases {
                let response = try await offPool {
                    try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "multipart/form-data; boundary=b0und"], body: body)
                }
                XCTAssertEqual(response.status, status, "\(name): \(response.errorMessage)")
                if status != 200 { XCTAssertTrue(response.errorMessage.contains(message), "\(name): \(response.errorMessage)") }
                if status == 200 { XCTAssertEqual((response.json["results"] as? [Any])?.count, 2, name) }
            }
        }
    }

    func testWrongMethodsGet405WithAllowAndHeadWorks() async throws {
        try await withService { port in
            let cases: [(String, String, Int, String?)] = [
                ("GET", "/v1/classify", 405, "POST"), ("DELETE", "/healthz", 405, "GET, HEAD"), ("PUT", "/metrics", 405, "GET, HEAD"),
                ("HEAD", "/healthz", 200, nil), ("HEAD", "/metrics", 200, nil), ("GET", "/nothing", 404, nil),
            ]
            for (method, path, status, allow) in cases {
                let response = try await offPool { try RawConnection.request(port: port, method, path) }
                XCTAssertEqual(response.status, status, "\(method) \(path)")
                XCTAssertEqual(response.headers["allow"], allow, "\(method) \(path)")
                if method == "HEAD" { XCTAssertEqual(response.body, [], path) }
                if status == 405 { XCTAssertTrue(response.errorMessage.contains("\(method) is not allowed on \(path)"), response.errorMessage) }
            }
        }
    }

    func testPixelLimitAndDeadline() async throws {
        XCTAssertEqual(ServerSettings().maxPixels, 4096 * 4096)
        let png = try png()  // 112 x 112 = 12,544 pixels
        try await withService({ $0.maxPixels = 12_543 }) { port in
            let response = try await offPool { try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "image/png"], body: png) }
            XCTAssertEqual(response.status, 422)
            XCTAssertTrue(response.errorMessage.contains("112x112") && response.errorMessage.contains("12543"), response.errorMessage)
            // The service's own flag, not fer-infer's words (issue 25, item 6).
            XCTAssertTrue(response.errorMessage.contains("this service's limit of 12543"), response.errorMessage)
            XCTAssertTrue(response.errorMessage.contains("fer-serve with a larger --max-pixels, or FER_SERVE_MAX_PIXELS"), response.errorMessage)
        }
        try await withService({ $0.maxPixels = 12_544 }) { port in
            let response = try await offPool { try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "image/png"], body: png) }
            XCTAssertEqual(response.status, 200, response.errorMessage)
        }
        // A classification slower than the deadline: 504 at the deadline, not when the work ends.
        try await withService({ $0.deadline = 0.3 }, beforeEachImage: { _ in Thread.sleep(forTimeInterval: 1.5) }) { port in
            let start = DispatchTime.now().uptimeNanoseconds
            let response = try await offPool { try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "image/png"], body: png) }
            let elapsed = secondsSince(start)
            XCTAssertEqual(response.status, 504)
            XCTAssertEqual(response.errorMessage, "request deadline of 0.3 s exceeded while decoding body")
            XCTAssertGreaterThan(elapsed, 0.25)
            XCTAssertLessThan(elapsed, 1.0)
        }
    }

    /// Two slow classifications hold both workers for 2 s: /healthz and /metrics still answer in
    /// milliseconds, and requests waiting for a worker get 503 when `--timeout` (0.5 s) is up.
    func testHealthStaysFastAndWaitersGet503OnTimeWhileWorkersAreBusy() async throws {
        let png = try png()
        try await withService({ $0.requestTimeout = 0.5 }, beforeEachImage: { _ in Thread.sleep(forTimeInterval: 2) }) { port in
            let post = { @Sendable () throws -> (RawResponse, Double) in
                let start = DispatchTime.now().uptimeNanoseconds
                let response = try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "image/png"], body: png)
                return (response, secondsSince(start))
            }
            async let slow1 = offPool(post)
            async let slow2 = offPool(post)
            try await Task.sleep(nanoseconds: 300_000_000)  // both workers busy now
            async let waiting1 = offPool(post)
            async let waiting2 = offPool(post)
            async let waiting3 = offPool(post)
            var latencies: [Double] = []
            for _ in 0..<20 {
                let (status, seconds) = try await offPool { () throws -> (Int, Double) in
                    let start = DispatchTime.now().uptimeNanoseconds
                    return (try RawConnection.request(port: port, "GET", "/healthz").status, secondsSince(start))
                }
                XCTAssertEqual(status, 200)
                latencies.append(seconds)
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            let metrics = try await offPool { try RawConnection.request(port: port, "GET", "/metrics") }
            XCTAssertTrue(String(decoding: metrics.body, as: UTF8.self).contains("fer_workers_busy 2"))
            XCTAssertLessThan(latencies.max() ?? 1, 0.1, "healthz latencies under saturation: \(latencies)")
            for (response, seconds) in try await [waiting1, waiting2, waiting3] {
                XCTAssertEqual(response.status, 503)
                XCTAssertEqual(response.errorMessage, "timed out after 0.5 s waiting for a worker")
                XCTAssertGreaterThan(seconds, 0.45)
                XCTAssertLessThan(seconds, 1.0)
            }
            for (response, seconds) in try await [slow1, slow2] {
                XCTAssertEqual(response.status, 200)
                XCTAssertGreaterThan(seconds, 1.9)
            }
        }
    }

    func testSlowClientsAreCutOff() async throws {
        try await withService({ $0.headerTimeout = 0.5; $0.idleTimeout = 1.5 }) { port in
            // Partial headers, or nothing at all: 408 and closed after the header timeout.
            for partial in ["GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", ""] {
                let (sent, seconds) = try await offPool { () throws -> ([UInt8], Double) in
                    let connection = try RawConnection(port: port, timeout: 5)
                    let start = DispatchTime.now().uptimeNanoseconds
                    if !partial.isEmpty { try connection.send(partial) }
                    return (try connection.readUntilClosed(), secondsSince(start))
                }
                XCTAssertTrue(String(decoding: sent, as: UTF8.self).hasPrefix("HTTP/1.1 408 Request Timeout"), String(decoding: sent, as: UTF8.self))
                XCTAssertGreaterThan(seconds, 0.4)
                XCTAssertLessThan(seconds, 1.4)
            }
            // Headers trickled one byte every 0.1 s: still cut off at the header timeout.
            let trickled = try await offPool { () throws -> Double in
                let connection = try RawConnection(port: port, timeout: 5)
                let start = DispatchTime.now().uptimeNanoseconds
                for byte in Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1234567890\r\n".utf8) {
                    guard (try? connection.send([byte])) != nil else { break }
                    Thread.sleep(forTimeInterval: 0.1)
                }
                return secondsSince(start)
            }
            XCTAssertLessThan(trickled, 1.5, "a trickled head must not outlive the header timeout")
            // A keep-alive connection: the header timeout does not apply between requests, the idle
            // timeout closes it.
            let (first, second, idle) = try await offPool { () throws -> (Int, Int, Double) in
                let connection = try RawConnection(port: port, timeout: 5)
                try connection.send(RawConnection.requestBytes("GET", "/healthz"))
                let first = try connection.readResponse().status
                Thread.sleep(forTimeInterval: 0.8)  // longer than the header timeout
                try connection.send(RawConnection.requestBytes("GET", "/healthz"))
                let second = try connection.readResponse().status
                let start = DispatchTime.now().uptimeNanoseconds
                let after = try connection.readUntilClosed()
                XCTAssertEqual(after, [])
                return (first, second, secondsSince(start))
            }
            XCTAssertEqual([first, second], [200, 200])
            XCTAssertGreaterThan(idle, 1.2)
            XCTAssertLessThan(idle, 3.0)
        }
    }

    func testConnectionsBeyondTheCapWaitUntilOneCloses() async throws {
        try await withService({ $0.maxConnections = 2 }) { port in
            try await offPool {
                let a = try RawConnection(port: port, timeout: 5)
                try a.send(RawConnection.requestBytes("GET", "/healthz"))
                XCTAssertEqual(try a.readResponse().status, 200)
                var b: RawConnection? = try RawConnection(port: port, timeout: 5)
                try b?.send(RawConnection.requestBytes("GET", "/healthz"))
                XCTAssertEqual(try b?.readResponse().status, 200)
                // A third connection completes in the kernel's backlog, but is not served...
                let c = try RawConnection(port: port, timeout: 0.7)
                try c.send(RawConnection.requestBytes("GET", "/healthz"))
                XCTAssertThrowsError(try c.readResponse()) { XCTAssertEqual("\($0)", "receive timed out") }
                // ...until one of the others closes.
                b = nil
                let start = DispatchTime.now().uptimeNanoseconds
                var status = 0
                while status == 0, secondsSince(start) < 5 { status = (try? c.readResponse().status) ?? 0 }
                XCTAssertEqual(status, 200)
            }
        }
    }
}

/// A multipart/form-data body: each part with its Content-Disposition, optional Content-Type and bytes.
func multipart(_ boundary: String, _ parts: [(disposition: String, type: String?, bytes: [UInt8])], closing: String? = nil) -> [UInt8] {
    var body = [UInt8]()
    for part in parts {
        body += Array("--\(boundary)\r\nContent-Disposition: \(part.disposition)\r\n".utf8)
        if let type = part.type { body += Array("Content-Type: \(type)\r\n".utf8) }
        body += Array("\r\n".utf8) + part.bytes + Array("\r\n".utf8)
    }
    return body + Array((closing ?? "--\(boundary)--\r\n").utf8)
}
