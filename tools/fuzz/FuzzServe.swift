// libFuzzer entry point over fer-serve's request bodies: the HTTP/1 framing (Content-Length and
// chunked bodies, pipelined requests, cut-off input), RequestBodyGuard, the body limits and in-flight
// budget, and the multipart parser. Compiled together with the body-reading sources of Sources/FERServe
// into one module (see build-serve.sh).
//
// The input's first byte is a switch, the second the size of the pieces the rest is fed in (1-256 bytes):
//   even: the rest is a multipart body with boundary "b0und", fed straight to MultipartBodyParser
//   odd:  the rest is raw bytes from a client, fed through NIO's HTTP/1 decoder, HTTP1ToHTTPServerCodec
//         and RequestBodyGuard, as fer-serve's pipeline has them, to a handler that reads each body as
//         the routes do (multipart when its Content-Type says so); then the clock jumps past the body
//         deadline and the connection closes
// A thrown ServiceError is an acceptable outcome; a crash, hang, sanitizer report, out-of-memory, a
// budget not given back or a result bigger than its input is not.

import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

let fuzzMaxBody = 1 << 20
let fuzzMaxParts = 64

/// Feeds `bytes` to `feed` in pieces of `piece` bytes.
func pieces(_ bytes: ArraySlice<UInt8>, of piece: Int, _ feed: (ByteBuffer) throws -> Void) rethrows {
    var start = bytes.startIndex
    while start < bytes.endIndex {
        let end = min(bytes.endIndex, start + piece)
        try feed(ByteBuffer(bytes: bytes[start..<end]))
        start = end
    }
}

/// Checks what a parser accepted against what it was given.
func check(_ contents: Multipart.Contents, fed: Int) {
    precondition(contents.files.count + contents.ignoredFields.count <= fuzzMaxParts, "more parts than the limit")
    let fileBytes = contents.files.reduce(0) { $0 + $1.bytes.count }
    precondition(fileBytes <= fed, "\(fileBytes) file bytes out of \(fed) fed")
}

func fuzzMultipart(_ body: ArraySlice<UInt8>, piece: Int) {
    let parser = MultipartBodyParser(boundary: "b0und", maxParts: fuzzMaxParts)
    do {
        try pieces(body, of: piece) { try parser.feed($0) }
        check(try parser.finish(), fed: body.count)
    } catch {}
}

/// Reads each request's body as the routes do and answers it, so that the guard sees responses too.
final class BodySink: ChannelInboundHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    let budget: InflightBodyBudget
    private var parser: MultipartBodyParser?
    private var limits: BodyLimits?
    private var reservation: BodyReservation?
    private var failed = false
    private var fed = 0

    init(budget: InflightBodyBudget) { self.budget = budget }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let reservation = budget.reservation()
            self.reservation = reservation
            failed = false
            fed = 0
            parser = nil
            let limits = BodyLimits(maxBytes: fuzzMaxBody, reservation: reservation)
            do {
                let type = try HeaderValue(parsing: head.headerFields[.contentType] ?? "")
                if type.value == "multipart/form-data" { parser = MultipartBodyParser(boundary: try Multipart.boundary(of: type), maxParts: fuzzMaxParts) }
                try limits.admit(contentLength: head.headerFields[.contentLength].flatMap { Int($0) })
            } catch {
                fail(context)
            }
            self.limits = limits
        case .body(let buffer):
            guard !failed else { return }
            do {
                try limits?.accept(buffer.readableBytes)
                fed += buffer.readableBytes
                try parser?.feed(buffer)
            } catch {
                fail(context)
            }
        case .end:
            if !failed, let parser {
                if let contents = try? parser.finish() { check(contents, fed: fed) }
            }
            if !failed { answer(context) }
            finishRequest()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !failed { fail(context) }
        finishRequest()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finishRequest()
        context.fireChannelInactive()
    }

    /// As a route that throws: answered, and its reservation given back at once.
    private func fail(_ context: ChannelHandlerContext) {
        failed = true
        answer(context)
        finishRequest()
    }

    private func answer(_ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: [.contentLength: "0"]))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func finishRequest() {
        reservation?.release()
        reservation = nil
        parser = nil
    }
}

func fuzzHTTP(_ input: ArraySlice<UInt8>, piece: Int) {
    let budget = InflightBodyBudget(limit: 4 * fuzzMaxBody)
    let channel = EmbeddedChannel()
    do {
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: false)
        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
        try channel.pipeline.syncOperations.addHandler(RequestBodyGuard(bodyTimeout: .seconds(30), maxBodyBytes: fuzzMaxBody, onRefused: { _ in }))
        try channel.pipeline.syncOperations.addHandler(BodySink(budget: budget))
    } catch {
        preconditionFailure("pipeline: \(error)")
    }
    func drain() {
        while (try? channel.readOutbound(as: ByteBuffer.self)) ?? nil != nil {}
    }
    try? pieces(input, of: piece) { piece in
        try channel.writeInbound(piece)  // throws once the guard closed the channel
        drain()
    }
    channel.embeddedEventLoop.advanceTime(by: .seconds(31))  // past the body deadline, and its grace
    drain()
    channel.embeddedEventLoop.advanceTime(by: .seconds(6))
    drain()
    _ = try? channel.finish()
    withExtendedLifetime(channel) {}
    precondition(budget.inUse == 0, "\(budget.inUse) bytes of the in-flight budget never given back")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let piece = Int(bytes[1]) + 1
    if bytes[0] & 1 == 0 {
        fuzzMultipart(bytes[2...], piece: piece)
    } else {
        fuzzHTTP(bytes[2...], piece: piece)
    }
    return 0
}
