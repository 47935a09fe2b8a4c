import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// Closes a connection whose request head (request line and headers) does not arrive in full
/// within `timeout` of its start: from the connection's opening for the first request, from the
/// first byte of each later one (time between requests is the idle timeout's business). The client
/// gets a 408 JSON error, then the connection closes. It sits first in the pipeline and sees raw
/// bytes: a head ends at the first CRLF CRLF; a new head may start once a final (non-1xx)
/// response has begun.
final class RequestHeadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum State {
        /// Reading a head; `matched` bytes of CRLF CRLF seen at the end of what came so far.
        case awaitingHead(matched: Int)
        /// The head is in; the request is being read or answered.
        case inRequest
    }

    private let timeout: TimeAmount
    private var state = State.awaitingHead(matched: 0)
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .awaitingHead(var matched) = state {
            arm(context)
            let crlfcrlf: [UInt8] = [13, 10, 13, 10]
            for byte in unwrapInboundIn(data).readableBytesView {
                if byte == crlfcrlf[matched] {
                    matched += 1
                } else {
                    matched = byte == 13 ? 1 : 0
                }
                if matched == 4 { break }
            }
            if matched == 4 {
                state = .inRequest
                timer?.cancel()
                timer = nil
            } else {
                state = .awaitingHead(matched: matched)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .inRequest = state {
            let interim: Bool
            if case .byteBuffer(let buffer) = unwrapOutboundIn(data), let start = buffer.getString(at: buffer.readerIndex, length: min(10, buffer.readableBytes)) {
                interim = start.hasPrefix("HTTP/1.1 1") || start.hasPrefix("HTTP/1.0 1")
            } else {
                interim = false
            }
            if !interim { state = .awaitingHead(matched: 0) }
        }
        context.write(data, promise: promise)
    }

    /// Starts the timer unless it runs already.
    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let seconds = Double(timeout.nanoseconds) / 1e9
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) {
            self.timer = nil
            let body = "{\"error\":{\"message\":\"request head not received within \(seconds) s\",\"status\":408}}"
            var response = context.channel.allocator.buffer(capacity: 160 + body.utf8.count)
            response.writeString("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)")
            context.writeAndFlush(self.wrapOutboundOut(.byteBuffer(response))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

/// Hummingbird's HTTP/1 channel with ``RequestHeadTimeoutHandler`` in front of it.
struct HeadTimeoutHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let base: HTTP1Channel
    let headTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let headTimeout = self.headTimeout
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RequestHeadTimeoutHandler(timeout: headTimeout))
        }.flatMap { base.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
