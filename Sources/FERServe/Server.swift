import Dispatch
import FERRuntime
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

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
    /// Seconds a request may wait for a worker before a 503.
    public var requestTimeout: Double = 30
    /// Seconds a request's decoding and classification may take once a worker has started it,
    /// before a 504.
    public var deadline: Double = 10
    /// Largest `width * height` decoded: 16,777,216 (4096 x 4096), below the command-line tool's
    /// PIL limit of 89,478,485, so that one request cannot take a gigabyte.
    public var maxPixels = 16_777_216
    /// Seconds a client has to send a request's head (request line and headers) before a 408
    /// and closing.
    public var headerTimeout: Double = 10
    /// Seconds a keep-alive connection may stay idle (or a request body stall) before it is closed.
    public var idleTimeout: Double = 60
    /// Open connections at most; further ones wait in the kernel's backlog until one closes.
    public var maxConnections = 512
    /// Level of the service's log, the access log (one line per request, at `info`) included.
    public var logLevel = Logger.Level.info

    public init() {}
}

/// The HTTP routes of `fer-serve` over one shared classifier:
///
/// - `POST /v1/classify`: a PNG or JPEG body (`image/png`, `image/jpeg` or
///   `application/octet-stream`), or `multipart/form-data` with one image per file part (other
///   fields are ignored); answers JSON like `fer-infer --json`.
/// - `POST /v1/analyze` (with a face analyzer): the same bodies, each a photo whose faces are found,
///   aligned and classified; answers JSON like `fer-infer --json` on photos (`faces` per image).
/// - `GET` or `HEAD /healthz`: `{"status": "ok", ...}`.
/// - `GET` or `HEAD /metrics`: Prometheus text (see ``ServiceMetrics``).
///
/// Every error is a JSON body `{"error": {"status": N, "message": "..."}}` with a 4xx/5xx status;
/// a known path with another method gets 405 with `Allow`.
public struct FERService: Sendable {
    public let classifier: FERClassifier
    /// The photo pipeline behind `/v1/analyze` (nil: that route answers 501).
    public let analyzer: FaceAnalyzer?
    public let settings: ServerSettings
    public let metrics: ServiceMetrics
    private let pool: WorkerPool
    private let beforeEachImage: (@Sendable (_ input: String) -> Void)?

    /// The routes and the methods each takes.
    static let routes: [String: [String]] = [
        "/v1/classify": ["POST"], "/v1/analyze": ["POST"], "/healthz": ["GET", "HEAD"], "/metrics": ["GET", "HEAD"],
    ]

    /// `beforeEachImage` runs on the worker thread before each image is decoded, with the image's
    /// name: a hook for tests and fault injection (a slow one stands for a slow classification).
    public init(classifier: FERClassifier, analyzer: FaceAnalyzer? = nil, settings: ServerSettings,
                beforeEachImage: (@Sendable (_ input: String) -> Void)? = nil) {
        self.classifier = classifier
        self.analyzer = analyzer
        self.settings = settings
        self.beforeEachImage = beforeEachImage
        let metrics = ServiceMetrics(model: classifier.model.architecture.description)
        self.metrics = metrics
        self.pool = WorkerPool(workers: max(1, settings.workers), metrics: metrics)
    }

    /// The router with every route and the error, metrics and access-log middleware.
    public func router() -> Router<FERRequestContext> {
        let router = Router(context: FERRequestContext.self)
        router.add(middleware: AccessLogMiddleware(metrics: metrics))
        let health = json(.ok, ["status": "ok", "architecture": classifier.model.architecture.description])
        router.get("healthz") { _, _ in health }
        router.head("healthz") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"]) }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.prometheusText())))
        }
        router.head("metrics") { _, _ in Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"]) }
        router.post("v1/classify") { request, context in try await classify(request, context: context) }
        router.post("v1/analyze") { request, context in try await analyze(request, context: context) }
        return router
    }

    /// A Hummingbird application serving ``router()`` on the configured address, with the
    /// connection limits of ``ServerSettings``; `onServerRunning` gets the port it listens on.
    public func application(onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "fer-serve")
        logger.logLevel = settings.logLevel
        let http1 = HTTP1Channel.Configuration(idleTimeout: .nanoseconds(Int64(settings.idleTimeout * 1e9)))
        let headTimeout = TimeAmount.nanoseconds(Int64(settings.headerTimeout * 1e9))
        let server = HTTPServerBuilder { responder in
            HeadTimeoutHTTP1Channel(base: HTTP1Channel(responder: responder, configuration: http1), headTimeout: headTimeout)
        }
        return Application(
            router: router(), server: server,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "fer-serve",
                                 availableConnectionsDelegate: MaximumAvailableConnections(max(1, settings.maxConnections), logger: logger)),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() async throws {
        try await application().runService()
    }

    /// The images of a request: the body itself, or every file part of a multipart body; and whether it was multipart.
    private func images(of request: Request) async throws -> (inputs: [Multipart.FilePart], isMultipart: Bool) {
        let rawType = request.headers[.contentType] ?? ""
        let contentType = try HeaderValue(parsing: rawType)
        let inputs: [Multipart.FilePart]
        let isMultipart = contentType.value == "multipart/form-data"
        if isMultipart {
            let boundary = try Multipart.boundary(of: contentType)  // before reading any of the body
            let contents = try await Multipart.read(request.body, boundary: boundary, maxBytes: settings.maxBodyBytes)
            guard !contents.files.isEmpty else {
                let ignored = contents.ignoredFields.isEmpty ? "" : " (fields ignored: \(contents.ignoredFields.joined(separator: ", ")))"
                throw ServiceError(.multipart("multipart body holds no file part\(ignored): send each image as a file, e.g. curl -F image=@face.png"))
            }
            inputs = contents.files
        } else if ["", "image/png", "image/jpeg", "application/octet-stream"].contains(contentType.value) {
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: settings.maxBodyBytes)
            } catch {
                throw ServiceError(.bodyTooLarge(limit: settings.maxBodyBytes))
            }
            guard body.readableBytes > 0 else { throw ServiceError(.emptyBody) }
            inputs = [.init(name: "body", bytes: Array(body.readableBytesView))]
        } else {
            throw ServiceError(.unsupportedMediaType(rawType))
        }
        return (inputs, isMultipart)
    }

    private func classify(_ request: Request, context: FERRequestContext) async throws -> Response {
        let (inputs, isMultipart) = try await images(of: request)
        let classifier = self.classifier
        let options = ImageDecodingOptions(maxPixels: settings.maxPixels, maxFileBytes: settings.maxBodyBytes)
        let hook = beforeEachImage
        let results = try await pool.run(waitLimit: settings.requestTimeout, deadline: settings.deadline) { job in
            try inputs.map { input in try Self.classifyOne(input, classifier: classifier, options: options, job: job, hook: hook) }
        }
        context.outcome.set(images: results.count)
        metrics.recordImages(results.count)
        let records = results.map { result -> [String: Any] in
            var record = result.classification.jsonFields(labels: classifier.labels)
            record["input"] = result.input
            record["timing_ms"] = ["decode": result.decodeMs, "inference": result.inferenceMs, "total": result.decodeMs + result.inferenceMs]
            return record
        }
        return json(.ok, isMultipart ? ["results": records] as [String: Any] : records[0])
    }

    private func analyze(_ request: Request, context: FERRequestContext) async throws -> Response {
        guard let analyzer else { throw ServiceError(.noAnalyzer) }
        let (inputs, isMultipart) = try await images(of: request)
        let options = ImageDecodingOptions(maxPixels: settings.maxPixels, maxFileBytes: settings.maxBodyBytes)
        let hook = beforeEachImage
        let results = try await pool.run(waitLimit: settings.requestTimeout, deadline: settings.deadline) { job in
            try inputs.map { input -> (String, PhotoAnalysis, Double) in
                try job.check("while decoding \(input.name)")
                hook?(input.name)
                let start = DispatchTime.now().uptimeNanoseconds
                let image: RGBImage
                do { image = try ImageDecoder.decode(bytes: input.bytes, path: input.name, options: options).image } catch {
                    throw ServiceError(.image(input: input.name, message: (error as? ImageError)?.message ?? "\(error)"))
                }
                let decodeMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                try job.check("while analysing \(input.name)")
                return (input.name, try analyzer.analyze(image), decodeMs)
            }
        }
        context.outcome.set(images: results.count)
        metrics.recordImages(results.count)
        metrics.recordFaces(results.reduce(0) { $0 + $1.1.faces.count })
        let records = results.map { (name, analysis, decodeMs) -> [String: Any] in
            var record = analysis.jsonFields(labels: analyzer.classifier.labels)
            record["input"] = name
            let t = analysis.timing
            record["timing_ms"] = ["decode": decodeMs, "detect": t.detect, "align": t.align, "classify": t.classify]
            return record
        }
        return json(.ok, isMultipart ? ["results": records] as [String: Any] : records[0])
    }

    private struct ImageResult: Sendable {
        let input: String
        let classification: Classification
        let decodeMs: Double
        let inferenceMs: Double
    }

    /// Runs on a worker thread.
    private static func classifyOne(_ input: Multipart.FilePart, classifier: FERClassifier, options: ImageDecodingOptions,
                                    job: WorkerJob, hook: (@Sendable (String) -> Void)?) throws -> ImageResult {
        try job.check("while decoding \(input.name)")
        hook?(input.name)
        let start = DispatchTime.now().uptimeNanoseconds
        let decoded: DecodedImage
        do {
            decoded = try ImageDecoder.decode(bytes: input.bytes, path: input.name, options: options)
        } catch {
            throw ServiceError(.image(input: input.name, message: error.message))
        }
        let decodedAt = DispatchTime.now().uptimeNanoseconds
        try job.check("while classifying \(input.name)")
        let classification = try classifier.classify(decoded.image)
        let end = DispatchTime.now().uptimeNanoseconds
        return ImageResult(input: input.name, classification: classification,
                           decodeMs: Double(decodedAt - start) / 1e6, inferenceMs: Double(end - decodedAt) / 1e6)
    }
}

/// Hummingbird's basic context plus what the access log reports about a request.
public struct FERRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let outcome = RequestOutcome()

    public init(source: ApplicationRequestContextSource) { coreContext = .init(source: source) }
}

/// Set by a route, read by the access log.
final class RequestOutcome: @unchecked Sendable {
    // Safety of @unchecked Sendable: `storedImages` is read and written under `lock`.
    private let lock = NSLock()
    private var storedImages: Int?

    func set(images: Int) {
        lock.lock()
        storedImages = images
        lock.unlock()
    }

    var images: Int? {
        lock.lock()
        defer { lock.unlock() }
        return storedImages
    }
}

func json(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    var fields = headers
    fields[.contentType] = "application/json"
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Turns every failure (unknown paths and methods included) into a JSON error, counts requests,
/// errors and latency, and writes one access-log line per request: method, path, status, duration,
/// and the number of images or the error.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = FERRequestContext
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let path = request.uri.path
        var failure: ServiceError?
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as ServiceError {
            failure = error
            response = Response(status: .internalServerError)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = FERService.routes[path] {
                failure = ServiceError(.methodNotAllowed(method: request.method.rawValue, path: path, allowed: allowed))
            } else if error.status == .notFound {
                failure = ServiceError(.notFound(method: request.method.rawValue, path: path))
            } else {
                failure = ServiceError(.http(error.status, message: error.body ?? error.status.reasonPhrase))
            }
            response = Response(status: .internalServerError)
        } catch {
            failure = ServiceError(.internalError("\(error)"))
            response = Response(status: .internalServerError)
        }
        if let failure {
            var headers: HTTPFields = [:]
            if case .methodNotAllowed(_, _, let allowed) = failure.kind { headers[.allow] = allowed.joined(separator: ", ") }
            response = json(failure.status, ["error": ["status": Int(failure.status.code), "message": failure.message]], headers: headers)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        metrics.record(route: path, status: Int(response.status.code), seconds: seconds)
        var metadata: Logger.Metadata = [:]
        if let images = context.outcome.images { metadata["images"] = .stringConvertible(images) }
        if let failure { metadata["error"] = .string(failure.message) }
        context.logger.log(level: .info, "\(request.method.rawValue) \(path) \(response.status.code) \(String(format: "%.1f", seconds * 1e3)) ms",
                           metadata: metadata)
        return response
    }
}
