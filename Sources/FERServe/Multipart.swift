import NIOCore

/// `multipart/form-data` request bodies (RFC 7578), parsed as they stream in by
/// ``MultipartBodyParser`` (one pass, linear in the body).
enum Multipart {
    /// RFC 2046 section 5.1.1: a boundary is 1 to 70 characters.
    static let maxBoundaryLength = 70

    /// The characters RFC 2046 allows in a boundary (`bchars`).
    private static let boundaryCharacters = Set(
        Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ".utf8))

    /// The boundary parameter of a multipart content type, checked against RFC 2046 before any body
    /// byte is read.
    static func boundary(of contentType: HeaderValue) throws(ServiceError) -> String {
        guard let boundary = contentType.parameters["boundary"] else { throw ServiceError(.multipart("content type without a boundary parameter")) }
        let bytes = Array(boundary.utf8)
        guard !bytes.isEmpty else { throw ServiceError(.multipart("empty multipart boundary")) }
        guard bytes.count <= maxBoundaryLength else {
            throw ServiceError(.multipart("multipart boundary is \(bytes.count) bytes long; RFC 2046 allows at most \(maxBoundaryLength)"))
        }
        if let bad = bytes.firstIndex(where: { !boundaryCharacters.contains($0) }) {
            throw ServiceError(.multipart("multipart boundary has a character RFC 2046 does not allow at position \(bad + 1)"))
        }
        guard bytes.last != 0x20 else { throw ServiceError(.multipart("multipart boundary ends with a space (RFC 2046 forbids it)")) }
        return boundary
    }

    /// A file part of the body: its name (the `filename`, else the field `name`, else `part N`) and bytes.
    struct FilePart: Sendable {
        var name: String
        var bytes: [UInt8]
    }

    /// What one body held: its file parts in order, and the names of the other (text) fields, which
    /// are ignored.
    struct Contents: Sendable {
        var files: [FilePart] = []
        var ignoredFields: [String] = []
    }

    /// Reads `body` through a ``MultipartBodyParser`` (at most `maxParts` parts), each chunk counted
    /// by `limits` first (the body limit and the in-flight budget; see ``BodyReader``).
    static func read<Body: AsyncSequence>(_ body: Body, boundary: String, maxParts: Int, limits: BodyLimits) async throws -> Contents
    where Body.Element == ByteBuffer {
        let parser = MultipartBodyParser(boundary: boundary, maxParts: maxParts)
        try await BodyReader.forEachChunk(of: body, limits: limits) { chunk throws(ServiceError) in try parser.feed(chunk) }
        return try parser.finish()
    }
}

/// One `multipart/form-data` body (RFC 2046 section 5.1.1, RFC 7578), fed chunk by chunk as it
/// arrives and parsed in one pass, linear in the body (no async, no I/O: the fuzz target in `tools/fuzz`
/// drives it directly). A part is a file when its Content-Disposition has a `filename` or its
/// Content-Type is `image/*` or `application/octet-stream`; other parts are form fields and are
/// skipped. Every part counts towards `maxParts`, fields included, and the first part over it is refused
/// as soon as its headers are read; a part's headers are at most ``maxHeaderBytes``. A body must end
/// with its closing delimiter (`--boundary--`); what follows it (the epilogue) is ignored.
///
/// Our own parser, not MultipartKit's: MultipartKit 4.7.1 traps (index out of range, the whole
/// process gone) on a byte over 0x7F in a part's header name, found by `tools/fuzz/fuzz-serve`.
final class MultipartBodyParser {
    /// Largest header section of one part, in bytes (400 beyond it).
    static let maxHeaderBytes = 16 << 10
    /// Longest transport padding (spaces and tabs) after a delimiter.
    static let maxPaddingBytes = 256

    private enum State {
        /// Before the first delimiter (the preamble, ignored).
        case preamble
        /// Right after a delimiter: `--` (the closing one), or padding and CRLF (a part follows).
        case afterDelimiter
        /// Inside a part's header section.
        case headers
        /// Inside a part's content.
        case content
        /// After the closing delimiter.
        case epilogue
    }

    private let boundary: String
    /// CRLF, `--`, the boundary: what ends a part's content. The body is read as if a CRLF preceded it,
    /// so that a delimiter at its very start is found the same way.
    private let delimiter: [UInt8]
    private let maxParts: Int
    private var state = State.preamble
    /// Bytes received but not yet consumed, from `position` on: at most a delimiter's length in
    /// `content` and `preamble` once a chunk is consumed, at most ``maxHeaderBytes`` in `headers`.
    private var pending: [UInt8] = [13, 10]
    private var position = 0
    /// In `headers`: where the search for the blank line goes on (each byte is looked at once however
    /// the section is cut into chunks).
    private var headerScan = 0
    private var contents = Multipart.Contents()
    /// 1-based number of the part being read (0 before the first).
    private var partNumber = 0
    private var current: (name: String, isFile: Bool)?
    private var bytes: [UInt8] = []
    private var error: ServiceError?
    /// Bytes fed so far.
    private(set) var receivedBytes = 0

    init(boundary: String, maxParts: Int) {
        self.boundary = boundary
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.maxParts = maxParts
    }

    /// Parses the next chunk of the body; throws at the first problem (the parser is then done).
    func feed(_ chunk: ByteBuffer) throws(ServiceError) {
        if let error { throw error }
        receivedBytes += chunk.readableBytes
        guard state != .epilogue else { return }
        pending += chunk.readableBytesView
        do {
            try consume()
        } catch {
            self.error = error
            throw error
        }
        headerScan -= position
        pending.removeFirst(position)
        position = 0
    }

    /// The parts of a body that ended after its closing delimiter.
    func finish() throws(ServiceError) -> Multipart.Contents {
        if let error { throw error }
        guard receivedBytes > 0 else { throw ServiceError(.emptyBody) }
        switch state {
        case .epilogue: return contents
        case .preamble: throw ServiceError(.multipart("malformed multipart body: boundary '\(boundary)' not found"))
        default:
            throw ServiceError(.multipart("malformed multipart body: part \(max(1, partNumber)) has no closing delimiter '--\(boundary)--'"))
        }
    }

    /// Consumes `pending` as far as it can be decided.
    private func consume() throws(ServiceError) {
        while true {
            switch state {
            case .preamble, .content:
                guard takeUntilDelimiter() else { return }
                completePart()
                state = .afterDelimiter
            case .afterDelimiter:
                guard try readDelimiterLine() else { return }
            case .headers:
                guard try readHeaders() else { return }
            case .epilogue:
                position = pending.count
                return
            }
        }
    }

    /// Looks for the next delimiter from `position`: hands what comes before it to the current part
    /// and moves past it (true); or, if there is none yet, hands over every byte that cannot begin one
    /// (false).
    private func takeUntilDelimiter() -> Bool {
        var start = position
        while let cr = pending[start...].firstIndex(of: 13) {
            let available = pending.count - cr
            if available < delimiter.count {
                if pending[cr...].elementsEqual(delimiter.prefix(available)) {
                    // A delimiter may begin here: kept for the next chunk.
                    handOver(pending[position..<cr])
                    position = cr
                    return false
                }
            } else if pending[cr..<(cr + delimiter.count)].elementsEqual(delimiter) {
                handOver(pending[position..<cr])
                position = cr + delimiter.count
                return true
            }
            start = cr + 1
        }
        handOver(pending[position...])
        position = pending.count
        return false
    }

    private func handOver(_ content: ArraySlice<UInt8>) {
        if state == .content, current?.isFile == true { bytes += content }
    }

    /// After a delimiter: `--` closes the body; spaces or tabs, then CRLF, begin a part. Returns false
    /// when more bytes are needed.
    private func readDelimiterLine() throws(ServiceError) -> Bool {
        let rest = pending[position...]
        guard rest.count >= 2 else { return false }
        if rest.starts(with: [0x2D, 0x2D]) {  // "--"
            state = .epilogue
            return true
        }
        let padding = rest.prefix { $0 == 0x20 || $0 == 0x09 }.count
        guard padding <= Self.maxPaddingBytes else { throw syntax("more than \(Self.maxPaddingBytes) bytes of padding after a delimiter") }
        guard padding + 2 <= rest.count else { return false }
        guard rest.dropFirst(padding).starts(with: [13, 10]) else { throw syntax("a delimiter is followed by neither '--' nor a line break") }
        position += padding + 2
        headerScan = position
        partNumber += 1
        state = .headers
        return true
    }

    /// A part's header section, up to its empty line. Returns false when more bytes are needed.
    private func readHeaders() throws(ServiceError) -> Bool {
        let end: Int  // index of the CRLF that ends the last header line, or of the blank line itself
        if pending[position...].starts(with: [13, 10]) {
            end = position  // no headers at all
        } else if let blank = pending[max(position, headerScan)...].firstRange(of: [13, 10, 13, 10]) {
            end = blank.lowerBound + 2
        } else {
            headerScan = max(position, pending.count - 3)
            guard pending.count - position <= Self.maxHeaderBytes + 2 else { throw headersTooLong() }
            return false
        }
        guard end - position <= Self.maxHeaderBytes else { throw headersTooLong() }
        var headers: [(name: String, value: String)] = []
        var lineStart = position
        while lineStart < end, let lineEnd = pending[lineStart..<end].firstRange(of: [13, 10]) {
            headers.append(try header(pending[lineStart..<lineEnd.lowerBound]))
            lineStart = lineEnd.upperBound
        }
        position = end + 2
        try openPart(headers)
        state = .content
        return true
    }

    /// One `name: value` line (RFC 9110 section 5: the name a token, no folding).
    private func header(_ line: ArraySlice<UInt8>) throws(ServiceError) -> (name: String, value: String) {
        if let first = line.first, first == 0x20 || first == 0x09 { throw syntax("folded header line (obsolete, RFC 9112 section 5.2)") }
        guard let colon = line.firstIndex(of: 0x3A) else { throw syntax("header line without ':'") }
        let name = line[..<colon]
        guard !name.isEmpty, name.allSatisfy(Self.isTokenCharacter) else {
            throw syntax("header name is not a token (RFC 9110 section 5.1)")
        }
        guard !line.contains(10), !line.contains(13) else { throw syntax("bare CR or LF in a header line") }
        let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces
        return (String(decoding: name, as: UTF8.self).lowercased(), value)
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private func openPart(_ headers: [(name: String, value: String)]) throws(ServiceError) {
        guard partNumber <= maxParts else { throw ServiceError(.tooManyParts(limit: maxParts)) }
        var isFile = false
        var disposition: HeaderValue?
        for (name, value) in headers {
            if name == "content-disposition" {
                do { disposition = try HeaderValue(parsing: value) } catch {
                    throw ServiceError(.multipart("part \(partNumber): \(error.message)"))
                }
                if disposition?.parameters["filename"] != nil { isFile = true }
            }
            if name == "content-type" {
                let type = value.lowercased()
                if type.hasPrefix("image/") || type.hasPrefix("application/octet-stream") { isFile = true }
            }
        }
        let name = disposition?.parameters["filename"] ?? disposition?.parameters["name"] ?? "part \(partNumber)"
        current = (name, isFile)
        bytes = []
    }

    private func completePart() {
        guard let current else { return }
        if current.isFile {
            contents.files.append(.init(name: current.name, bytes: bytes))
        } else {
            contents.ignoredFields.append(current.name)
        }
        self.current = nil
        bytes = []
    }

    private func syntax(_ detail: String) -> ServiceError {
        ServiceError(.multipart("malformed multipart body: part \(max(1, partNumber)): \(detail)"))
    }

    private func headersTooLong() -> ServiceError {
        ServiceError(.multipart("malformed multipart body: part \(partNumber)'s headers are over \(Self.maxHeaderBytes) bytes"))
    }
}
