import Foundation
import HTTPTypes

/// Why a request failed: each kind carries its context and maps to one HTTP status and a one-line
/// message, answered as `{"error": {"status": N, "message": "..."}}`.
public struct ServiceError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The request had no body.
        case emptyBody
        /// The body is over `--max-body`.
        case bodyTooLarge(limit: Int)
        /// The body ended (the client half-closed or closed its side) before its framing did: after
        /// `received` bytes of the `declared` Content-Length, or inside a chunked body (`declared` nil).
        case bodyTruncated(received: Int, declared: Int?)
        /// The request's framing does not parse: a malformed chunk-size line, Content-Length together
        /// with Transfer-Encoding, a bad header line (what is wrong).
        case malformedRequest(String)
        /// The whole body did not arrive within `--body-timeout` seconds of the request head (answered
        /// 408, then the connection closes).
        case bodyTimeout(seconds: Double, received: Int)
        /// The body stopped arriving for `--idle-timeout` and the connection was closed under it: counted
        /// as 408, never sent (there is no connection left to send it on).
        case bodyStalled(received: Int)
        /// The client closed the connection (or it broke) in the middle of the body: counted as 499, as
        /// nginx does, never sent.
        case clientGone(received: Int)
        /// Accepting this body would take the request bodies in flight over `--max-inflight-bytes`:
        /// `needed` more bytes while `inUse` of `limit` are held (503, before the body is read).
        case inflightBudgetExhausted(needed: Int, inUse: Int, limit: Int)
        /// A multipart body with more parts than `--max-parts` (refused at the first part over it).
        case tooManyParts(limit: Int)
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
        case .emptyBody, .malformedHeader, .multipart, .bodyTruncated, .malformedRequest: .badRequest
        case .bodyTooLarge, .tooManyParts: .contentTooLarge
        case .bodyTimeout, .bodyStalled: .requestTimeout
        case .clientGone: Self.clientClosedRequest
        case .inflightBudgetExhausted: .serviceUnavailable
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
        case .bodyTooLarge(let limit): "request body is over the \(limit)-byte limit (--max-body)"
        case .bodyTruncated(let received, let declared?):
            "request body ended after \(received) of the \(declared) bytes its Content-Length declares"
        case .bodyTruncated(let received, nil):
            "chunked request body ended after \(received) bytes, before its last (zero-size) chunk"
        case .malformedRequest(let detail): "malformed request: \(detail)"
        case .bodyTimeout(let seconds, let received):
            "request body not received in full within \(seconds) s (--body-timeout); \(received) bytes came"
        case .bodyStalled(let received):
            "request body stalled after \(received) bytes; the connection was closed at the idle timeout (--idle-timeout)"
        case .clientGone(let received): "the client closed the connection after \(received) bytes of the request body"
        case .inflightBudgetExhausted(let needed, let inUse, let limit):
            "request bodies in flight hold \(inUse) of the \(limit)-byte budget (--max-inflight-bytes); "
                + "\(needed) more do not fit: retry later"
        case .tooManyParts(let limit): "multipart body has more than \(limit) parts, the limit (--max-parts)"
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

    /// Whether the connection is closed once the answer is written: the request's framing is broken
    /// or its body was cut off, so no later request on it could be trusted.
    public var closesConnection: Bool {
        switch kind {
        case .bodyTruncated, .malformedRequest, .bodyTimeout, .bodyStalled, .clientGone: true
        default: false
        }
    }

    /// The body every error is answered with: `{"error": {"message": "...", "status": N}}`.
    public var jsonBody: [UInt8] {
        let object: [String: Any] = ["error": ["status": Int(status.code), "message": message]]
        return [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
    }

    /// 499, nginx's status for a request whose client went away before the answer (never sent).
    public static let clientClosedRequest = HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request")
}
