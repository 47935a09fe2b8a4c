import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Watches each request body on a connection, between the HTTP/1 codec and the service, and turns
/// what can go wrong with the stream into the ``ServiceError`` the route reading the body throws
/// (so it is answered, logged and counted as what it is):
///
/// - the body deadline: the whole body must arrive within `bodyTimeout` of the request head
///   (``ServiceError/Kind/bodyTimeout(seconds:received:)``, 408); a body trickled byte by byte is
///   cut off there, whatever the idle timeout;
/// - a body that ends (the client half-closed or closed) before its Content-Length or last chunk:
///   ``ServiceError/Kind/bodyTruncated(received:declared:)``, 400;
/// - framing that does not parse inside a body (a malformed chunk-size line):
///   ``ServiceError/Kind/malformedRequest(_:)``, 400;
/// - a client that vanishes mid-body (``ServiceError/Kind/clientGone(received:)``, 499) or a body
///   closed under at the idle timeout (``ServiceError/Kind/bodyStalled(received:)``, 408): counted,
///   never sent.
///
/// It also answers `Expect: 100-continue` (curl sends it for bodies over 1 MiB, then waits a second
/// for the answer): `100 Continue` as soon as the responses before the request are written, unless
/// the head already decides the request (a Content-Length over `maxBodyBytes`), whose final answer
/// then comes without the body being sent.
///
/// After any of these the connection closes once the answer is written (at most ``answerGrace``
/// later), as it does after any response carrying `Connection: close`. Where the route has already
/// answered (the rest of the body was being drained), the connection just closes. A request whose
/// head does not parse (Content-Length together with Transfer-Encoding, a bad header line) never
/// reaches a route: it is answered here with the same JSON error body, 400, reported through
/// `onRefused` (the access log and metrics), and the connection closes.
final class RequestBodyGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// How long a route has to answer a body error before the connection is closed anyway.
    static let answerGrace = TimeAmount.seconds(5)

    /// The body being read: bytes so far, and its Content-Length (nil for a chunked body).
    private struct Body {
        var received = 0
        let declared: Int?
    }

    private let bodyTimeout: TimeAmount
    private let maxBodyBytes: Int
    private let onRefused: @Sendable (ServiceError) -> Void
    /// Request heads seen, final responses begun and ended, on this connection.
    private var requests = 0
    private var responsesStarted = 0
    private var responsesFinished = 0
    private var body: Body?
    /// An error was passed on or answered here: nothing more is read from this connection.
    private var failed = false
    private var closeAfterResponse = false
    /// A refusal waiting for the responses before it to be written.
    private var pendingRefusal: ServiceError?
    /// The latest request asked for `100 Continue`, which waits for the responses before it.
    private var continueWanted = false
    private var timer: Scheduled<Void>?
    private var graceTimer: Scheduled<Void>?

    init(bodyTimeout: TimeAmount, maxBodyBytes: Int, onRefused: @escaping @Sendable (ServiceError) -> Void) {
        self.bodyTimeout = bodyTimeout
        self.maxBodyBytes = maxBodyBytes
        self.onRefused = onRefused
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimers() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            requests += 1
            let chunked = head.headerFields[.transferEncoding]?.lowercased().contains("chunked") ?? false
            let body = Body(declared: chunked ? nil : head.headerFields[.contentLength].flatMap { Int($0) })
            self.body = body
            if head.headerFields[.expect]?.lowercased() == "100-continue", (body.declared ?? 0) <= maxBodyBytes {
                continueWanted = true
                sendContinueIfDue(context)
            }
            timer?.cancel()
            let seconds = Double(bodyTimeout.nanoseconds) / 1e9
            timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: bodyTimeout) {
                self.timer = nil
                if let body = self.body { self.failBody(context, ServiceError(.bodyTimeout(seconds: seconds, received: body.received))) }
            }
        case .body(let buffer):
            body?.received += buffer.readableBytes
        case .end:
            body = nil
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !failed else { return }  // the decoder's later errors, after ours
        if let parserError = error as? HTTPParserError {
            if let body {
                failBody(context, parserError == .invalidEOFState
                         ? ServiceError(.bodyTruncated(received: body.received, declared: body.declared))
                         : ServiceError(.malformedRequest(Self.describe(parserError))))
            } else if parserError == .invalidEOFState {
                failed = true  // a head cut off by the client's close: nobody to answer
                context.close(promise: nil)
            } else {
                refuse(context, ServiceError(.malformedRequest(Self.describe(parserError))))
            }
        } else if let body, error is IOError || error is ChannelError {
            failBody(context, ServiceError(.clientGone(received: body.received)))
        } else {
            context.fireErrorCaught(error)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The decoder reports a cut body as it sees the end of input; this is in case it did not.
        if case ChannelEvent.inputClosed = event, !failed, let body {
            failBody(context, ServiceError(.bodyTruncated(received: body.received, declared: body.declared)))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !failed, let body { failBody(context, ServiceError(.clientGone(received: body.received))) }
        cancelTimers()
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            if response.status.kind != .informational { responsesStarted += 1 }
            if response.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responsesFinished += 1
            let allAnswered = responsesFinished >= requests
            if allAnswered, let refusal = pendingRefusal {
                context.write(data, promise: promise)
                pendingRefusal = nil
                writeRefusal(context, refusal)
            } else if allAnswered, closeAfterResponse {
                context.writeAndFlush(data).assumeIsolated().whenComplete { result in
                    promise?.completeWith(result)
                    context.close(promise: nil)
                }
            } else {
                context.write(data, promise: promise)
                sendContinueIfDue(context)
            }
        }
    }

    /// Writes the `100 Continue` a request asked for once every response before it is written.
    private func sendContinueIfDue(_ context: ChannelHandlerContext) {
        guard continueWanted, !failed, responsesFinished == requests - 1, responsesStarted == requests - 1 else { return }
        continueWanted = false
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // A close from behind (the idle timeout) under a body still being read: the route is told.
        if mode == .all, !failed, let body {
            failed = true
            self.body = nil
            cancelTimers()
            if responsesStarted < requests { context.fireErrorCaught(ServiceError(.bodyStalled(received: body.received))) }
        }
        context.close(mode: mode, promise: promise)
    }

    /// The body in progress failed with `error`: the route reading it is told (and the connection
    /// closes after its answer), or, if it answered already, the connection closes now.
    private func failBody(_ context: ChannelHandlerContext, _ error: ServiceError) {
        failed = true
        body = nil
        timer?.cancel()
        timer = nil
        guard responsesFinished < requests else {
            context.close(promise: nil)
            return
        }
        closeAfterResponse = true
        if responsesStarted < requests { context.fireErrorCaught(error) }
        graceTimer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.answerGrace) {
            context.close(promise: nil)
        }
    }

    /// Answers a request that never reached a route, once the responses before it are written.
    private func refuse(_ context: ChannelHandlerContext, _ error: ServiceError) {
        failed = true
        onRefused(error)
        if responsesFinished >= requests {
            writeRefusal(context, error)
        } else {
            pendingRefusal = error
        }
    }

    private func writeRefusal(_ context: ChannelHandlerContext, _ error: ServiceError) {
        let bytes = error.jsonBody
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let head = HTTPResponse(status: error.status, headerFields: [
            .contentType: "application/json", .contentLength: "\(bytes.count)", .connection: "close",
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(buffer)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func cancelTimers() {
        timer?.cancel()
        timer = nil
        graceTimer?.cancel()
        graceTimer = nil
    }

    /// What a parse error means, in the client's terms.
    static func describe(_ error: HTTPParserError) -> String {
        switch error {
        case .unexpectedContentLength:
            "Content-Length together with Transfer-Encoding (RFC 9112 section 6.3: a request must not have both)"
        case .invalidChunkSize:
            "malformed chunk-size line in the chunked body (RFC 9112 section 7.1: hexadecimal digits, then CRLF)"
        case .invalidContentLength:
            // llhttp's code both for a bad number and for a Content-Length after Transfer-Encoding.
            "Content-Length is not one decimal number, or comes with Transfer-Encoding (RFC 9112 section 6.3: a request must not have both)"
        case .unknown:
            // What NIO maps llhttp's HPE_INVALID_TRANSFER_ENCODING (and a few internal codes) to.
            "Transfer-Encoding is not chunked as its last coding, or comes with Content-Length (RFC 9112 section 6.3: a request must not have both)"
        case .headerOverflow: "request head too large"
        default: "\(error.debugDescription) (HTTP/1.1 framing, RFC 9112)"
        }
    }
}
