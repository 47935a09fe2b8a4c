import Dispatch
import FERRuntime
import Foundation
import Hummingbird

/// Settings of a `fer-serve` instance.
public struct ServerSettings: Sendable {
    /// Address to bind (`127.0.0.1` by default: expose it deliberately).
    public var host = "127.0.0.1"
    /// Port (0 picks a free one).
    public var port = 8080
    /// Largest accepted request body, in bytes.
    public var maxBodyBytes = 16 << 20
    /// Requests classified at the same time; others wait their turn.
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    /// Seconds a request may wait for and run its classification before a 503.
    public var requestTimeout: Double = 30

    public init() {}
}

/// The HTTP routes of `fer-serve` over one shared classifier:
///
/// - `POST /v1/classify`: a PNG or JPEG body (`image/png`, `image/jpeg` or
///   `application/octet-stream`), or `multipart/form-data` with one image per part; answers JSON
///   like `fer-infer --json`.
/// - `GET /healthz`: `{"status": "ok", ...}`.
/// - `GET /metrics`: Prometheus text (requests by route and status, errors, a latency
///   histogram, model info).
///
/// Every error is a JSON body `{"error": {"status": N, "message": "..."}}` with a 4xx/5xx status.
public struct FERService: Sendable {
    public let classifier: FERClassifier
    public let settings: ServerSettings
    public let metrics = ServiceMetrics()
    private let gate: WorkerGate

    public init(classifier: FERClassifier, settings: ServerSettings) {
        self.classifier = classifier
        self.settings = settings
        self.gate = WorkerGate(workers: max(1, settings.workers))
    }

    /// The router with every route and the JSON error middleware.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: metrics))
        router.get("healthz") { _, _ in
            json(.ok, ["status": "ok", "architecture": classifier.model.architecture.description])
        }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.prometheusText(model: classifier.model.architecture.description))))
        }
        router.post("v1/classify") { request, _ in try await classify(request) }
        return router
    }

    /// A Hummingbird application serving ``router()`` on the configured address.
    public func application() -> some ApplicationProtocol {
        Application(router: router(), configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "fer-serve"))
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() async throws {
        try await application().runService()
    }

    private func classify(_ request: Request) async throws -> Response {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: settings.maxBodyBytes)
        } catch {
            throw ServiceError(.contentTooLarge, "request body is over the \(settings.maxBodyBytes)-byte limit")
        }
        guard body.readableBytes > 0 else { throw ServiceError(.badRequest, "empty request body: send a PNG or JPEG image") }
        let bytes = Array(body.readableBytesView)
        var inputs: [(name: String, bytes: [UInt8])]
        if contentType.hasPrefix("multipart/form-data") {
            inputs = try Multipart.parts(of: bytes, contentType: contentType)
            guard !inputs.isEmpty else { throw ServiceError(.badRequest, "multipart body holds no parts") }
        } else if contentType.isEmpty || contentType.hasPrefix("image/png") || contentType.hasPrefix("image/jpeg")
                    || contentType.hasPrefix("application/octet-stream") {
            inputs = [("body", bytes)]
        } else {
            throw ServiceError(.unsupportedMediaType, "unsupported content type '\(contentType)': send image/png, image/jpeg or multipart/form-data")
        }
        let classifier = self.classifier
        let results = try await gate.run(timeout: settings.requestTimeout) { () throws -> [[String: Any]] in
            try inputs.map { input in
                let start = DispatchTime.now().uptimeNanoseconds
                let result: Classification
                do {
                    result = try classifier.classify(encoded: input.bytes)
                } catch let error as ImageError {
                    throw ServiceError(.unprocessableContent, "\(input.name): \(error.message)")
                }
                let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                var record = result.jsonFields(labels: classifier.labels)
                record["input"] = input.name
                record["timing_ms"] = ["total": ms]
                return record
            }
        }
        let answer: Any = contentType.hasPrefix("multipart/form-data") ? ["results": results] as [String: Any] : results[0]
        return json(.ok, answer)
    }
}

/// An error answered as JSON with its status.
struct ServiceError: Error {
    let status: HTTPResponse.Status
    let message: String
    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
}

func json(_ status: HTTPResponse.Status, _ object: Any) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func errorResponse(_ status: HTTPResponse.Status, _ message: String) -> Response {
    json(status, ["error": ["status": Int(status.code), "message": message]])
}

/// Turns every failure (including unknown paths and methods) into a JSON error and counts
/// requests, errors and latency.
struct ErrorAndMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as ServiceError {
            response = errorResponse(error.status, error.message)
        } catch let error as HTTPError {
            let message = error.status == .notFound
                ? "no route for \(request.method) \(request.uri.path)" : (error.body ?? error.status.reasonPhrase)
            response = errorResponse(error.status, message)
        } catch {
            response = errorResponse(.internalServerError, "\(error)")
        }
        metrics.record(route: request.uri.path, status: Int(response.status.code),
                       seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }
}

/// Runs classifications on a dedicated queue, at most `workers` at a time, off Swift's
/// cooperative threads (a forward pass takes milliseconds of CPU).
final class WorkerGate: @unchecked Sendable {
    // Safety of @unchecked Sendable: DispatchQueue and DispatchSemaphore are thread-safe.
    private let queue = DispatchQueue(label: "fer-serve.workers", attributes: .concurrent)
    private let slots: DispatchSemaphore

    init(workers: Int) { slots = DispatchSemaphore(value: workers) }

    func run<T>(timeout: Double, _ work: @escaping () throws -> T) async throws -> T {
        let box = UncheckedBox(work)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<UncheckedBox<T>, Error>) in
            queue.async {
                guard self.slots.wait(timeout: .now() + timeout) == .success else {
                    continuation.resume(throwing: ServiceError(.serviceUnavailable, "timed out after \(timeout) s waiting for a worker"))
                    return
                }
                defer { self.slots.signal() }
                do { continuation.resume(returning: UncheckedBox(try box.value())) } catch { continuation.resume(throwing: error) }
            }
        }.value
    }
}

/// Carries a non-Sendable value across the queue hop; only one side touches it at a time.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
