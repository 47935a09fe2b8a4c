import Hummingbird

/// Why a request failed: each kind carries its context and maps to one HTTP status and a one-line
/// message, answered as `{"error": {"status": N, "message": "..."}}`.
public struct ServiceError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The request had no body.
        case emptyBody
        /// The body is over `--max-body`.
        case bodyTooLarge(limit: Int)
        /// A Content-Type the route does not take.
        case unsupportedMediaType(String)
        /// A header value that does not parse (the value, what is wrong).
        case malformedHeader(String, detail: String)
        /// A multipart problem: bad boundary, bad syntax, no closing delimiter, no file part.
        case multipart(String)
        /// An image that does not decode (the part's name, the decoder's message).
        case image(input: String, message: String)
        /// No worker became free within `--timeout` seconds.
        case workerWaitTimeout(seconds: Double)
        /// Decoding and classifying took longer than `--deadline` seconds (what was being done).
        case deadlineExceeded(seconds: Double, during: String)
        /// A route exists for the path, but not for the method.
        case methodNotAllowed(method: String, path: String, allowed: [String])
        /// No route for the path.
        case notFound(method: String, path: String)
        /// An error the HTTP framework raised, with its status.
        case http(HTTPResponse.Status, message: String)
        /// `/v1/analyze` on a service started without a face detector.
        case noAnalyzer
        /// Anything else (the underlying error's text).
        case internalError(String)
    }

    public let kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public var status: HTTPResponse.Status {
        switch kind {
        case .emptyBody, .malformedHeader, .multipart: .badRequest
        case .bodyTooLarge: .contentTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .image: .unprocessableContent
        case .workerWaitTimeout: .serviceUnavailable
        case .deadlineExceeded: .gatewayTimeout
        case .methodNotAllowed: .methodNotAllowed
        case .notFound: .notFound
        case .http(let status, _): status
        case .internalError: .internalServerError
        case .noAnalyzer: .notImplemented
        }
    }

    public var message: String {
        switch kind {
        case .emptyBody: "empty request body: send a PNG or JPEG image"
        case .bodyTooLarge(let limit): "request body is over the \(limit)-byte limit"
        case .unsupportedMediaType(let type):
            "unsupported content type '\(type)': send image/png, image/jpeg or multipart/form-data"
        case .malformedHeader(let value, let detail): "malformed header value '\(value.prefix(200))': \(detail)"
        case .multipart(let detail): detail
        case .image(let input, let message): "\(input): \(message)"
        case .workerWaitTimeout(let seconds): "timed out after \(seconds) s waiting for a worker"
        case .deadlineExceeded(let seconds, let during): "request deadline of \(seconds) s exceeded \(during)"
        case .methodNotAllowed(let method, let path, let allowed):
            "\(method) is not allowed on \(path): use \(allowed.joined(separator: " or "))"
        case .notFound(let method, let path): "no route for \(method) \(path)"
        case .http(_, let message): message
        case .internalError(let text): text
        case .noAnalyzer: "this service has no face detector: start fer-serve with a --detector to use /v1/analyze"
        }
    }

    public var description: String { "\(status.code) \(message)" }
}
