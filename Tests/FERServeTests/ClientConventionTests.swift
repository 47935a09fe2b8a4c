import FERServe
import Foundation
import XCTest

/// What common clients do without being asked: curl's `Expect: 100-continue` on bodies over 1 MiB,
/// curl's `--data-binary` labelling a file as a form, HEAD for the head GET would send.
final class ClientConventionTests: XCTestCase {
    private func png() throws -> [UInt8] {
        let path = TestModels.root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png").path
        guard let data = FileManager.default.contents(atPath: path) else { throw XCTSkip("\(path) is missing: run tools/setup") }
        return [UInt8](data)
    }

    /// `100 Continue` at once for a body the service will read, so the client does not sit out its
    /// wait (a second with curl); the final answer at once, and no 100, when the head already
    /// decides it; nothing interim for a request that did not ask.
    func testExpectContinueIsAnsweredAtOnce() async throws {
        let png = try png()
        try await withLoopbackService({ $0.maxBodyBytes = 100_000 }) { _, port in
            try await offPool {
                let connection = try RawConnection(port: port)
                try connection.send("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: \(png.count)\r\n\r\n")
                XCTAssertTrue(connection.isReadable(within: 0.5), "no 100 Continue within 0.5 s")
                let interim = try connection.readResponse()
                XCTAssertEqual(interim.status, 100)
                try connection.send(png)
                let final = try connection.readResponse()
                XCTAssertEqual(final.status, 200, String(decoding: final.body, as: UTF8.self))
                XCTAssertNotNil(final.json["label"])

                // The same connection: the next request's 100 follows the previous answer.
                try connection.send(Array("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-Continue\r\nContent-Length: \(png.count)\r\n\r\n".utf8))
                XCTAssertEqual(try connection.readResponse().status, 100, "the field's value is case-insensitive")
                try connection.send(png)
                XCTAssertEqual(try connection.readResponse().status, 200)
            }
            try await offPool {
                // Over --max-body: the 413 is the answer, and the body is never asked for.
                let connection = try RawConnection(port: port)
                try connection.send("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 100001\r\n\r\n")
                XCTAssertTrue(connection.isReadable(within: 2))
                let refused = try connection.readResponse()
                XCTAssertEqual(refused.status, 413)
                XCTAssertTrue(refused.errorMessage.contains("100000"), refused.errorMessage)
            }
            try await offPool {
                // Exactly --max-body: worth its body.
                let connection = try RawConnection(port: port)
                try connection.send("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
                XCTAssertEqual(try connection.readResponse().status, 100)
            }
            try await offPool {
                let connection = try RawConnection(port: port)
                try connection.send("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: \(png.count)\r\n\r\n")
                XCTAssertFalse(connection.isReadable(within: 0.3), "an interim answer nobody asked for")
                try connection.send(png)
                XCTAssertEqual(try connection.readResponse().status, 200)
            }
        }
    }

    /// `curl --data-binary @face.png` sends `application/x-www-form-urlencoded`: the body is used when
    /// it is an image, and a real form is still 415.
    func testAnImageLabelledAsAFormIsClassified() async throws {
        let png = try png()
        try await withLoopbackService { _, port in
            try await offPool {
                let form = ["Content-Type": "application/x-www-form-urlencoded"]
                let image = try RawConnection.request(port: port, "POST", "/v1/classify", headers: form, body: png)
                XCTAssertEqual(image.status, 200, String(decoding: image.body, as: UTF8.self))
                let plain = try RawConnection.request(port: port, "POST", "/v1/classify", headers: ["Content-Type": "image/png"], body: png)
                XCTAssertEqual(image.json["logits"] as? [Double], plain.json["logits"] as? [Double])
                let fields = try RawConnection.request(port: port, "POST", "/v1/classify", headers: form, body: Array("a=1&b=2".utf8))
                XCTAssertEqual(fields.status, 415)
                XCTAssertTrue(fields.errorMessage.contains("application/x-www-form-urlencoded"), fields.errorMessage)
            }
        }
    }

    /// HEAD gets GET's head: the same status, type and Content-Length, and no body.
    func testHeadGivesTheContentLengthOfGet() async throws {
        try await withLoopbackService { _, port in
            try await offPool {
                for path in ["/healthz", "/metrics"] {
                    let get = try RawConnection.request(port: port, "GET", path)
                    XCTAssertEqual(get.status, 200)
                    let connection = try RawConnection(port: port)
                    try connection.send("HEAD \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    let text = String(decoding: try connection.readUntilClosed(), as: UTF8.self)
                    XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), text)
                    XCTAssertTrue(text.hasSuffix("\r\n\r\n"), "a HEAD answer has no body: \(text)")
                    let length = text.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    let declared = length.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
                    if path == "/healthz" {
                        XCTAssertEqual(declared, get.body.count, text)
                    } else {
                        // The metrics move between the two requests (the GET is counted): a length, not 0.
                        XCTAssertGreaterThan(declared ?? 0, get.body.count / 2, text)
                    }
                    XCTAssertEqual(text.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }?.lowercased(),
                                   "content-type: " + (get.headers["content-type"] ?? "?"))
                }
            }
        }
    }
}
