import FERRuntime
import FERServe
import Foundation

/// The models the loopback tests share (loaded once per test process).
enum TestModels {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let classifier = Result {
        try FERClassifier(contentsOf: root.appendingPathComponent("weights/lfnsb7-seeded.pth").path, maxBatch: 1)
    }
    static let analyzer = Result {
        try FaceAnalyzer(detectorPath: root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path,
                         classifier: FERClassifier(model: classifier.get().model, maxBatch: 8))
    }
}

/// Runs a service on 127.0.0.1 (a free port, 2 workers, warnings only; then `configure`) until `body`
/// returns, and stops it.
func withLoopbackService<T: Sendable>(_ configure: (inout ServerSettings) -> Void = { _ in }, analyzer: FaceAnalyzer? = nil,
                                      beforeEachImage: (@Sendable (String) -> Void)? = nil,
                                      _ body: @escaping @Sendable (FERService, Int) async throws -> T) async throws -> T {
    var settings = ServerSettings()
    settings.port = 0
    settings.workers = 2
    settings.logLevel = .warning
    configure(&settings)
    let service = FERService(classifier: try TestModels.classifier.get(), analyzer: analyzer, settings: settings, beforeEachImage: beforeEachImage)
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = service.application { port in continuation.yield(port) }
    let server = Task { try await app.run() }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else { throw RawError("the service did not start") }
    let result = await Result(asyncCatching: { try await body(service, port) })
    server.cancel()
    _ = await server.result
    return try result.get()
}
