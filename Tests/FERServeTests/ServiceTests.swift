import FERRuntime
import FERServe
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

/// `fer-serve` over real HTTP on 127.0.0.1: correct results for real images, a 4xx JSON error for
/// every kind of bad request, and the server still serving afterwards.
final class ServiceTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func makeService(maxBody: Int = 1 << 20) throws -> FERService {
        var settings = ServerSettings()
        settings.port = 0
        settings.maxBodyBytes = maxBody
        settings.workers = 2
        let classifier = try FERClassifier(contentsOf: Self.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path, maxBatch: 1)
        return FERService(classifier: classifier, settings: settings)
    }

    private func fixture(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: Self.root.appendingPathComponent(path).path) else {
            throw XCTSkip("\(path) is missing: run tools/setup")
        }
        return [UInt8](data)
    }


    func testClassifiesRealImagesLikeTheLibrary() async throws {
        let png = try fixture(".downloads/samples/Tom_Hanks_54745.png")
        let jpeg = try fixture("Tests/Fixtures/images/inputs/jpeg-420-75x51.jpg")
        let service = try makeService()
        let expected = try service.classifier.classify(encoded: png)
        let app = Application(router: service.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/v1/classify", method: .post, headers: [.contentType: "image/png"], body: ByteBuffer(bytes: png)) { response in
                XCTAssertEqual(response.status, .ok)
                let json = jsonObject(response.body)
                XCTAssertEqual(json["label"] as? String, expected.label)
                XCTAssertEqual((json["logits"] as? [Double])?.map { Float($0) }, expected.logits)
                XCTAssertEqual((json["labels"] as? [String])?.count, 7)
            }
            // Several images in one multipart request.
            let boundary = "fer-test-boundary"
            var body = [UInt8]()
            for (name, bytes) in [("face.png", png), ("small.jpg", jpeg)] {
                body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\(name)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
                body += bytes + Array("\r\n".utf8)
            }
            body += Array("--\(boundary)--\r\n".utf8)
            try await client.execute(uri: "/v1/classify", method: .post,
                                     headers: [.contentType: "multipart/form-data; boundary=\(boundary)"], body: ByteBuffer(bytes: body)) { response in
                XCTAssertEqual(response.status, .ok)
                let results = jsonObject(response.body)["results"] as? [[String: Any]] ?? []
                XCTAssertEqual(results.map { $0["input"] as? String }, ["face.png", "small.jpg"])
                XCTAssertEqual(results.first?["label"] as? String, expected.label)
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(jsonObject(response.body)["status"] as? String, "ok")
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                XCTAssertTrue(text.contains("fer_requests_total{route=\"/v1/classify\",status=\"200\"} 2"), text)
                XCTAssertTrue(text.contains("fer_request_duration_seconds_bucket{le=\"+Inf\"}"), text)
                XCTAssertTrue(text.contains("fer_model_info{architecture=\"LFNSB (7 classes)\"} 1"), text)
            }
        }
    }

    func testEveryBadRequestGetsA4xxJSONErrorAndTheServerKeepsServing() async throws {
        let png = try fixture(".downloads/samples/Tom_Hanks_54745.png")
        let service = try makeService(maxBody: 64 * 1024)
        let app = Application(router: service.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        let cases: [(String, HTTPRequest.Method, HTTPFields, [UInt8], HTTPResponse.Status, String)] = [
            ("/v1/classify", .post, [.contentType: "image/png"], Array("garbage bytes".utf8), .unprocessableContent, "not a PNG or JPEG"),
            ("/v1/classify", .post, [.contentType: "image/png"], Array(png.prefix(png.count / 2)), .unprocessableContent, "truncated PNG"),
            ("/v1/classify", .post, [.contentType: "image/png"], [], .badRequest, "empty request body"),
            ("/v1/classify", .post, [.contentType: "image/png"], [UInt8](repeating: 0x89, count: 100 * 1024), .contentTooLarge, "limit"),
            ("/v1/classify", .post, [.contentType: "text/plain"], png, .unsupportedMediaType, "unsupported content type"),
            ("/v1/classify", .post, [.contentType: "multipart/form-data"], png, .badRequest, "boundary"),
            ("/v1/classify", .get, [:], [], .methodNotAllowed, "GET is not allowed on /v1/classify: use POST"),
            ("/healthz", .post, [:], png, .methodNotAllowed, "use GET or HEAD"),
            ("/v2/nothing", .post, [:], png, .notFound, "/v2/nothing"),
        ]
        try await app.test(.live) { client in
            for (uri, method, headers, body, status, message) in cases {
                try await client.execute(uri: uri, method: method, headers: headers, body: ByteBuffer(bytes: body)) { response in
                    XCTAssertEqual(response.status, status, "\(method) \(uri) \(message)")
                    XCTAssertEqual(response.headers[.contentType], "application/json")
                    let error = jsonObject(response.body)["error"] as? [String: Any]
                    XCTAssertEqual(error?["status"] as? Int, Int(status.code))
                    XCTAssertTrue((error?["message"] as? String ?? "").contains(message), "\(String(describing: error))")
                }
                try await client.execute(uri: "/v1/classify", method: .post, headers: [.contentType: "image/png"], body: ByteBuffer(bytes: png)) { response in
                    XCTAssertEqual(response.status, .ok, "still serving after \(message)")
                }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                XCTAssertTrue(String(buffer: response.body).contains("fer_errors_total \(cases.count)"))
            }
        }
    }

    /// POST /v1/analyze: a photo's faces as the library's FaceAnalyzer finds and classifies them, in the
    /// CLI's JSON shape; several photos in one multipart request; faces counted in /metrics; bad
    /// bodies get the same 4xx errors as /v1/classify; a service without a detector answers 501.
    func testAnalyzesPhotosLikeTheLibrary() async throws {
        let photo = try fixture(".downloads/photos/t1.jpg")
        let cat = try fixture(".downloads/photos/chelsea.png")
        var settings = ServerSettings()
        settings.port = 0
        settings.workers = 2
        let base = try makeService()
        let faceClassifier = try FERClassifier(model: base.classifier.model, maxBatch: 8)
        let analyzer = try FaceAnalyzer(detectorPath: Self.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path,
                                        classifier: faceClassifier)
        let expected = try analyzer.analyze(encoded: photo)
        let service = FERService(classifier: base.classifier, analyzer: analyzer, settings: settings)
        let app = Application(router: service.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/v1/analyze", method: .post, headers: [.contentType: "image/jpeg"], body: ByteBuffer(bytes: photo)) { response in
                XCTAssertEqual(response.status, .ok)
                let json = jsonObject(response.body)
                XCTAssertEqual(json["width"] as? Int, 1280)
                XCTAssertEqual(json["height"] as? Int, 886)
                let faces = json["faces"] as? [[String: Any]] ?? []
                XCTAssertEqual(faces.count, 6)
                XCTAssertEqual(faces.map { $0["face"] as? Int }, Array(1...6), "numbered as fer-infer numbers them")
                let timing = json["timing_ms"] as? [String: Double] ?? [:]
                XCTAssertEqual(Set(timing.keys), ["decode", "detect", "align", "classify", "total"])
                XCTAssertEqual(timing["total"] ?? 0, ["decode", "detect", "align", "classify"].map { timing[$0] ?? 0 }.reduce(0, +), accuracy: 1e-9)
                for (got, want) in zip(faces, expected.faces) {
                    // Foundation's JSON writer keeps 15-16 significant digits.
                    for (a, b) in zip(got["box"] as? [Double] ?? [], want.face.box) { XCTAssertEqual(a, b, accuracy: 1e-9) }
                    XCTAssertEqual(got["score"] as? Double ?? 0, want.face.score, accuracy: 1e-9)
                    XCTAssertEqual((got["landmarks"] as? [[Double]])?.count, 5)
                    XCTAssertEqual(got["label"] as? String, want.classification.label)
                    XCTAssertEqual((got["logits"] as? [Double])?.map { Float($0) }, want.classification.logits)
                }
            }
            let boundary = "fer-analyze-boundary"
            var body = [UInt8]()
            for (name, bytes) in [("group.jpg", photo), ("cat.png", cat)] {
                body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\(name)\"\r\n\r\n".utf8)
                body += bytes + Array("\r\n".utf8)
            }
            body += Array("--\(boundary)--\r\n".utf8)
            try await client.execute(uri: "/v1/analyze", method: .post,
                                     headers: [.contentType: "multipart/form-data; boundary=\(boundary)"], body: ByteBuffer(bytes: body)) { response in
                XCTAssertEqual(response.status, .ok)
                let results = jsonObject(response.body)["results"] as? [[String: Any]] ?? []
                XCTAssertEqual(results.map { $0["input"] as? String }, ["group.jpg", "cat.png"])
                XCTAssertEqual(results.map { ($0["faces"] as? [Any])?.count }, [6, 0])
            }
            try await client.execute(uri: "/v1/analyze", method: .post, headers: [.contentType: "image/png"], body: ByteBuffer(bytes: Array("garbage".utf8))) { response in
                XCTAssertEqual(response.status, .unprocessableContent)
                XCTAssertTrue(String(buffer: response.body).contains("not a PNG or JPEG"))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                XCTAssertTrue(text.contains("fer_faces_total 12"), text)
                XCTAssertTrue(text.contains("fer_requests_total{route=\"/v1/analyze\",status=\"200\"} 2"), text)
            }
        }
        let plain = Application(router: base.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await plain.test(.live) { client in
            try await client.execute(uri: "/v1/analyze", method: .post, headers: [.contentType: "image/jpeg"], body: ByteBuffer(bytes: photo)) { response in
                XCTAssertEqual(response.status, .notImplemented)
                XCTAssertTrue(String(buffer: response.body).contains("--detector"))
            }
        }
    }
}

private func jsonObject(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] ?? [:]
}
