import NIOCore

/// The limits one request body is read under: at most `maxBytes` (`--max-body`, 413), and every byte
/// held in `reservation` against the service's in-flight budget (`--max-inflight-bytes`, 503).
struct BodyLimits {
    /// Largest body, in bytes.
    let maxBytes: Int
    /// The request's share of the in-flight budget (nil: no budget, as in the fuzz target).
    let reservation: BodyReservation?
    /// Body bytes accepted so far.
    private(set) var received = 0

    init(maxBytes: Int, reservation: BodyReservation?) {
        self.maxBytes = maxBytes
        self.reservation = reservation
    }

    /// Before any body byte is read: a declared Content-Length over the limit is refused at once, and
    /// one within it is reserved whole (so a request that will not fit waits for nothing).
    func admit(contentLength: Int?) throws(ServiceError) {
        guard let contentLength else { return }
        guard contentLength <= maxBytes else { throw ServiceError(.bodyTooLarge(limit: maxBytes)) }
        try reservation?.cover(contentLength)
    }

    /// Counts `count` more bytes: throws once the body is over `maxBytes`, or when the bytes beyond
    /// the reservation (a chunked body, a body longer than declared) do not fit the budget.
    mutating func accept(_ count: Int) throws(ServiceError) {
        received += count
        guard received <= maxBytes else { throw ServiceError(.bodyTooLarge(limit: maxBytes)) }
        try reservation?.cover(received)
    }
}

/// Reads request bodies under ``BodyLimits``. What goes wrong with the stream itself (truncated,
/// malformed framing, the body deadline, a vanished client) arrives as a ``ServiceError`` from
/// ``RequestBodyGuard`` and is passed on as it is.
enum BodyReader {
    /// Hands each chunk of `body` to `consume` once `limits` accepted it.
    static func forEachChunk<Body: AsyncSequence>(of body: Body, limits: BodyLimits,
                                                  _ consume: (ByteBuffer) throws(ServiceError) -> Void) async throws(ServiceError)
    where Body.Element == ByteBuffer {
        var limits = limits
        do {
            for try await chunk in body {
                try limits.accept(chunk.readableBytes)
                try consume(chunk)
            }
        } catch let error as ServiceError {
            throw error
        } catch {
            throw ServiceError(.internalError("reading the request body: \(error)"))
        }
    }

    /// The whole body, as one array (its capacity reserved from the declared length, so it is not
    /// copied while it grows).
    static func collect<Body: AsyncSequence>(_ body: Body, contentLength: Int?, limits: BodyLimits) async throws(ServiceError) -> [UInt8]
    where Body.Element == ByteBuffer {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(contentLength ?? 0, limits.maxBytes))
        try await forEachChunk(of: body, limits: limits) { chunk in bytes += chunk.readableBytesView }
        return bytes
    }
}
