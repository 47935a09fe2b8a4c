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
    /// Largest accepted request body, in bytes (413): a declared Content-Length over it is refused
    /// before the body is read.
    public var maxBodyBytes = 16 << 20
    /// Request bodies in flight (reserved by their Content-Length before they are read, counted as they
    /// arrive when chunked, held until the request is answered), at most this many bytes; a request
    /// that would go over it gets a 503 before its body is read. At least ``maxBodyBytes``.
    public var maxInflightBodyBytes = 256 << 20
    /// Parts of a multipart body at most, text fields included (413 at the first part over it).
    public var maxParts = 64
    /// Seconds a request's whole body may take to arrive, counted from its head, before a 408 and
    /// closing (a trickled body is cut off here, whatever the idle timeout).
    public var bodyTimeout: Double = 30
    /// Once request bodies in flight that held at least this many bytes at once are all answered, the
    /// memory freed is given back to the system (``ProcessMemory/returnFreedMemory()``; counted as
    /// `fer_memory_returns_total`). Without it a burst of uploads stays resident.
    public var returnMemoryAfterBytes = ProcessMemory.retainedLimit
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
/// a known path with another method gets 405 with `Allow`. In a multipart request each file part gets
/// its own entry in `results`, in order: its result, or `{"input": NAME, "error": {"status": N,
/// "message": "NAME: ..."}}` when that image is refused (one bad part costs the others nothing); the
/// answer is 200 whenever the request itself was well formed. The request as a whole fails (4xx/5xx,
/// no `results`) for what concerns all of it: its headers or body framing, its size and part count,
/// the in-flight budget, the body deadline, the wait for a worker and the processing deadline.
public struct FERService: Sendable {
    public let classifier: FERClassifier
    /// The photo pipeline behind `/v1/analyze` (nil: that route answers 501).
    public let analyzer: FaceAnalyzer?
    public let settings: ServerSettings
    public let metrics: ServiceMetrics
    let pool: WorkerPool
    /// Request bodies in flight (``ServerSettings/maxInflightBodyBytes``).
    let bodyBudget: InflightBodyBudget
    let beforeEachImage: (@Sendable (_ input: String) -> Void)?

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
        self.bodyBudget = InflightBodyBudget(limit: settings.maxInflightBodyBytes, trimAfter: settings.returnMemoryAfterBytes) {
            ProcessMemory.returnFreedMemory()
            metrics.recordMemoryReturn()
        }
    }

    /// Bytes of request bodies held now against ``ServerSettings/maxInflightBodyBytes``.
    public var inflightBodyBytes: Int { bodyBudget.inUse }

    /// The router with every route and the error, metrics and access-log middleware.
    public func router() -> Router<FERRequestContext> {
        let router = Router(context: FERRequestContext.self)
        router.add(middleware: AccessLogMiddleware(metrics: metrics))
        let health = json(.ok, ["status": "ok", "architecture": classifier.model.architecture.description])
        router.get("healthz") { _, _ in health }
        router.head("healthz") { _, _ in Self.headOnly(health) }
        let prometheus: @Sendable () -> Response = { Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                                    body: .init(byteBuffer: ByteBuffer(string: metrics.prometheusText()))) }
        router.get("metrics") { _, _ in prometheus() }
        router.head("metrics") { _, _ in Self.headOnly(prometheus()) }
        router.post("v1/classify") { request, context in try await classify(request, context: context) }
        router.post("v1/analyze") { request, context in try await analyze(request, context: context) }
        return router
    }

    /// The answer to HEAD: `response`'s head, its Content-Length that of the body GET would send.
    static func headOnly(_ response: Response) -> Response {
        var headers = response.headers
        headers[.contentLength] = response.body.contentLength.map(String.init)
        return Response(status: response.status, headers: headers)
    }

    /// A Hummingbird application serving ``router()`` on the configured address, with the
    /// connection limits of ``ServerSettings``; `onServerRunning` gets the port it listens on.
    public func application(onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "fer-serve")
        logger.logLevel = settings.logLevel
        let bodyTimeout = TimeAmount.nanoseconds(Int64(settings.bodyTimeout * 1e9))
        let metrics = self.metrics
        let refused: @Sendable (ServiceError) -> Void = { [logger] error in
            metrics.record(route: "other", status: Int(error.status.code), seconds: 0)
            logger.info("- - \(error.status.code) (refused before any route)", metadata: ["error": .string(error.message)])
        }
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestBodyGuard(bodyTimeout: bodyTimeout, maxBodyBytes: settings.maxBodyBytes, onRefused: refused)],
            idleTimeout: .nanoseconds(Int64(settings.idleTimeout * 1e9)))
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

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; `onServerRunning` gets the port
    /// once it is listening.
    /// A bind that fails throws ``ListenError``.
    public func run(onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) async throws {
        do {
            try await application(onServerRunning: onServerRunning).runService()
        } catch let error as IOError where [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(error.errnoCode) {
            throw ListenError(host: settings.host, port: settings.port, reason: String(cString: strerror(error.errnoCode)))
        }
    }
}

/// The service's address could not be listened on (in use, not this machine's, or a privileged port).
public struct ListenError: Error, CustomStringConvertible {
    public let host: String, port: Int, reason: String
    public var description: String {
        "cannot listen on \(host):\(port): \(reason) (choose another --port, 0 for a free one, or another --host)"
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
    // Safety of @unchecked Sendable: `counts` is read and written under `lock`.
    private let lock = NSLock()
    private var counts: (images: Int, failed: Int)?

    /// `images` processed, `failed` of the request's parts refused on their own.
    func set(images: Int, failed: Int = 0) {
        lock.lock()
        counts = (images, failed)
        lock.unlock()
    }

    var images: (images: Int, failed: Int)? {
        lock.lock()
        defer { lock.unlock() }
        return counts
    }
}
