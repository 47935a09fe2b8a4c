import ArgumentParser
import FERRuntime
import FERServe
import Foundation
import Logging

/// `fer-serve`: the classifier as an HTTP service. Flags override environment variables.
@main
struct FerServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fer-serve",
        abstract: "Serve facial-expression classification over HTTP.",
        discussion: """
            Routes: POST /v1/classify (a PNG/JPEG body, or multipart/form-data with one image per part;
            JSON like `fer-infer --json`), POST /v1/analyze (the same bodies as photos: every face found,
            aligned and classified; JSON like `fer-infer --json` on photos), GET /healthz, GET /metrics
            (Prometheus text).
            Errors are JSON: {"error": {"status": N, "message": "..."}}; in a multipart request each
            part gets its own entry in "results" (its result, or its error), 200 when the request itself
            was well formed. SIGTERM or SIGINT stops it
            gracefully (requests in flight finish).

            Environment: FER_SERVE_HOST, FER_SERVE_PORT, FER_MODEL, FER_DETECTOR, FER_SERVE_WORKERS,
            FER_SERVE_MAX_BODY, FER_SERVE_MAX_INFLIGHT_BYTES, FER_SERVE_MAX_PARTS, FER_SERVE_TIMEOUT,
            FER_SERVE_DEADLINE, FER_SERVE_MAX_PIXELS, FER_SERVE_HEADER_TIMEOUT, FER_SERVE_BODY_TIMEOUT,
            FER_SERVE_IDLE_TIMEOUT, FER_SERVE_MAX_CONNECTIONS, FER_SERVE_LOG_LEVEL.

            Example:
              fer-serve --port 8080 --model weights/lfnsb7-seeded.pth
              curl --data-binary @face.png -H 'Content-Type: image/png' localhost:8080/v1/classify
              curl --data-binary @group.jpg -H 'Content-Type: image/jpeg' localhost:8080/v1/analyze
            """)

    static let env = ProcessInfo.processInfo.environment

    @Option(help: "Address to bind.")
    var host = env["FER_SERVE_HOST"] ?? "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = Int(env["FER_SERVE_PORT"] ?? "") ?? 8080

    @Option(help: "Model file (.pth or fused .safetensors). Default: $FER_MODEL or \(DefaultModel.relativePath).")
    var model: String?

    @Option(help: "Face detector for /v1/analyze (RetinaFace checkpoint). Default: $FER_DETECTOR or \(DefaultModel.detectorRelativePath).")
    var detector: String?

    @Option(name: .customLong("detect-size"), help: "Long side of the detector input; larger photos are shrunk to it.")
    var detectSize = FaceDetectionOptions().detectSize

    @Option(name: .customLong("detect-threshold"), help: "Minimum face score, in [0, 1).")
    var detectThreshold = FaceDetectionOptions().threshold

    @Option(name: .customLong("max-faces"), help: "Most faces classified per photo, best first.")
    var maxFaces = FaceDetectionOptions().maxFaces

    @Option(help: "Classifications run at the same time.")
    var workers = Int(env["FER_SERVE_WORKERS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("max-body"), help: "Largest request body in bytes (then 413; default 16 MiB).")
    var maxBody = Int(env["FER_SERVE_MAX_BODY"] ?? "") ?? 16 << 20

    @Option(name: .customLong("max-inflight-bytes"),
            help: "Bytes of request bodies held at once, at least --max-body (beyond it 503 before the body is read; default 256 MiB).")
    var maxInflightBytes = Int(env["FER_SERVE_MAX_INFLIGHT_BYTES"] ?? "") ?? 256 << 20

    @Option(name: .customLong("max-parts"), help: "Parts of a multipart body at most, text fields included (then 413).")
    var maxParts = Int(env["FER_SERVE_MAX_PARTS"] ?? "") ?? 64

    @Option(help: "Seconds a request may wait for a worker (then 503).")
    var timeout = Double(env["FER_SERVE_TIMEOUT"] ?? "") ?? 30

    @Option(help: "Seconds a request's decoding and classification may take once started (then 504).")
    var deadline = Double(env["FER_SERVE_DEADLINE"] ?? "") ?? 10

    @Option(name: .customLong("max-pixels"), help: "Largest width x height decoded (default 4096 x 4096).")
    var maxPixels = Int(env["FER_SERVE_MAX_PIXELS"] ?? "") ?? 16_777_216

    @Option(name: .customLong("header-timeout"), help: "Seconds a client has to send a request's headers (then 408 and close).")
    var headerTimeout = Double(env["FER_SERVE_HEADER_TIMEOUT"] ?? "") ?? 10

    @Option(name: .customLong("body-timeout"), help: "Seconds a request's whole body may take to arrive after its head (then 408 and close).")
    var bodyTimeout = Double(env["FER_SERVE_BODY_TIMEOUT"] ?? "") ?? 30

    @Option(name: .customLong("idle-timeout"), help: "Seconds an idle keep-alive connection stays open.")
    var idleTimeout = Double(env["FER_SERVE_IDLE_TIMEOUT"] ?? "") ?? 60

    @Option(name: .customLong("max-connections"), help: "Open connections at most (more wait in the backlog).")
    var maxConnections = Int(env["FER_SERVE_MAX_CONNECTIONS"] ?? "") ?? 512

    @Option(name: .customLong("log-level"), help: "trace, debug, info (one access-log line per request), notice, warning, error or critical.")
    var logLevel = env["FER_SERVE_LOG_LEVEL"] ?? "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard workers >= 1, maxBody >= 1, maxPixels >= 1, maxConnections >= 1, maxParts >= 1 else {
            throw ValidationError("--workers, --max-body, --max-pixels, --max-parts and --max-connections must be positive")
        }
        guard maxInflightBytes >= maxBody else {
            throw ValidationError("--max-inflight-bytes (\(maxInflightBytes)) must be at least --max-body (\(maxBody)), or no body of the largest size could be read")
        }
        for (name, value) in [("--timeout", timeout), ("--deadline", deadline), ("--header-timeout", headerTimeout),
                              ("--body-timeout", bodyTimeout), ("--idle-timeout", idleTimeout)] {
            guard value > 0, value <= 86_400 else { throw ValidationError("\(name) must be between 0 and 86400 seconds, got \(value)") }
        }
        do { try FaceDetectionOptions(detectSize: detectSize, threshold: detectThreshold, maxFaces: maxFaces).validate() } catch {
            throw ValidationError("\(error) (--detect-size, --detect-threshold, --max-faces)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got '\(logLevel)'")
        }
    }

    func run() async throws {
        ProcessMemory.keepFreedBuffers()
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let path = try DefaultModel.resolve(model)
        let classifier = try FERClassifier(contentsOf: path, maxBatch: 1)
        let detectorPath = try DefaultModel.resolveDetector(detector)
        let analyzer: FaceAnalyzer
        do {
            analyzer = try FaceAnalyzer(detectorPath: detectorPath, classifier: classifier.sharingModel(maxBatch: 8),
                                        options: FaceDetectionOptions(detectSize: detectSize, threshold: detectThreshold, maxFaces: maxFaces))
        } catch {
            throw ValidationError("\(detectorPath): \(error)")
        }
        var settings = ServerSettings()
        settings.host = host
        settings.port = port
        settings.workers = workers
        settings.maxBodyBytes = maxBody
        settings.maxInflightBodyBytes = maxInflightBytes
        settings.maxParts = maxParts
        settings.bodyTimeout = bodyTimeout
        settings.requestTimeout = timeout
        settings.deadline = deadline
        settings.maxPixels = maxPixels
        settings.headerTimeout = headerTimeout
        settings.idleTimeout = idleTimeout
        settings.maxConnections = maxConnections
        settings.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let banner = "fer-serve: \(classifier.model.architecture) from \(path), detector \(detectorPath), \(workers) workers"
        // Announced once listening: with the port it got (--port 0), and never before a bind that fails.
        try await FERService(classifier: classifier, analyzer: analyzer, settings: settings).run { port in
            FileHandle.standardError.write(Data("\(banner), http://\(host):\(port)\n".utf8))
        }
    }
}

