import ArgumentParser
import FERRuntime
import FERServe
import Foundation

/// `fer-serve`: the classifier as an HTTP service. Flags override environment variables.
@main
struct FerServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fer-serve",
        abstract: "Serve facial-expression classification over HTTP.",
        discussion: """
            Routes: POST /v1/classify (a PNG/JPEG body, or multipart/form-data with one image per part;
            JSON like `fer-infer --json`), GET /healthz, GET /metrics (Prometheus text).
            Errors are JSON: {"error": {"status": N, "message": "..."}}. SIGTERM or SIGINT stops it
            gracefully (requests in flight finish).

            Environment: FER_SERVE_HOST, FER_SERVE_PORT, FER_MODEL, FER_SERVE_WORKERS,
            FER_SERVE_MAX_BODY, FER_SERVE_TIMEOUT.

            Example:
              fer-serve --port 8080 --model weights/lfnsb7-seeded.pth
              curl --data-binary @face.png -H 'Content-Type: image/png' localhost:8080/v1/classify
            """)

    static let env = ProcessInfo.processInfo.environment

    @Option(help: "Address to bind.")
    var host = env["FER_SERVE_HOST"] ?? "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = Int(env["FER_SERVE_PORT"] ?? "") ?? 8080

    @Option(help: "Model file (.pth or fused .safetensors). Default: $FER_MODEL or \(DefaultModel.relativePath).")
    var model: String?

    @Option(help: "Classifications run at the same time.")
    var workers = Int(env["FER_SERVE_WORKERS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("max-body"), help: "Largest request body in bytes.")
    var maxBody = Int(env["FER_SERVE_MAX_BODY"] ?? "") ?? 16 << 20

    @Option(help: "Seconds a request may wait for a worker.")
    var timeout = Double(env["FER_SERVE_TIMEOUT"] ?? "") ?? 30

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard workers >= 1, maxBody >= 1, timeout > 0 else { throw ValidationError("--workers, --max-body and --timeout must be positive") }
    }

    func run() async throws {
        let path = try DefaultModel.resolve(model)
        let classifier = try FERClassifier(contentsOf: path, maxBatch: 1)
        var settings = ServerSettings()
        settings.host = host
        settings.port = port
        settings.workers = workers
        settings.maxBodyBytes = maxBody
        settings.requestTimeout = timeout
        FileHandle.standardError.write(Data("fer-serve: \(classifier.model.architecture) from \(path), \(workers) workers, http://\(host):\(port)\n".utf8))
        try await FERService(classifier: classifier, settings: settings).run()
    }
}
