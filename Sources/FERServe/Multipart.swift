import Hummingbird
import MultipartKit

/// A header value of the form `type/subtype; name=value; name="quoted value"` (RFC 9110 section 5.6.6):
/// parameter names compare case-insensitively, values (tokens or quoted strings) keep their case.
struct HeaderValue: Equatable {
    /// The part before the first `;`, lowercased (`multipart/form-data`, `form-data`).
    let value: String
    /// Parameters by lowercased name, values as sent (quotes and backslash escapes removed).
    let parameters: [String: String]

    init(parsing text: String) throws(ServiceError) {
        let bytes = Array(text.utf8)
        var i = 0
        func skipSpace() { while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 } }
        while i < bytes.count, bytes[i] != 0x3B { i += 1 }  // ';'
        value = String(decoding: bytes[..<i], as: UTF8.self).trimmingSpaces.lowercased()
        var parameters: [String: String] = [:]
        while i < bytes.count {
            i += 1  // the ';'
            skipSpace()
            if i == bytes.count { break }  // a trailing ';'
            let nameStart = i
            while i < bytes.count, bytes[i] != 0x3D, bytes[i] != 0x3B { i += 1 }  // '=' or ';'
            guard i < bytes.count, bytes[i] == 0x3D, i > nameStart else {
                throw ServiceError(.malformedHeader(text, detail: "parameter at byte \(nameStart) has no '=value'"))
            }
            let name = String(decoding: bytes[nameStart..<i], as: UTF8.self).trimmingSpaces.lowercased()
            i += 1
            skipSpace()
            var parameterValue: [UInt8] = []
            if i < bytes.count, bytes[i] == 0x22 {  // a quoted string, with backslash escapes
                i += 1
                var closed = false
                while i < bytes.count {
                    if bytes[i] == 0x5C, i + 1 < bytes.count {
                        parameterValue.append(bytes[i + 1])
                        i += 2
                    } else if bytes[i] == 0x22 {
                        closed = true
                        i += 1
                        break
                    } else {
                        parameterValue.append(bytes[i])
                        i += 1
                    }
                }
                guard closed else { throw ServiceError(.malformedHeader(text, detail: "parameter '\(name)' has an unclosed quote")) }
                skipSpace()
                guard i == bytes.count || bytes[i] == 0x3B else {
                    throw ServiceError(.malformedHeader(text, detail: "text after the quoted value of '\(name)'"))
                }
            } else {
                let start = i
                while i < bytes.count, bytes[i] != 0x3B { i += 1 }
                parameterValue = Array(String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces.utf8)
            }
            parameters[name] = String(decoding: parameterValue, as: UTF8.self)
        }
        self.parameters = parameters
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}

/// `multipart/form-data` request bodies (RFC 7578), parsed as they stream in by MultipartKit's
/// `MultipartParser` (one pass, linear in the body).
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

    /// Reads `body` through the parser, at most `maxBytes` bytes. A part is a file when its
    /// Content-Disposition has a `filename` or its Content-Type is `image/*` or
    /// `application/octet-stream`; other parts are form fields and are skipped. A body must end
    /// with its closing delimiter (`--boundary--`).
    static func read<Body: AsyncSequence>(_ body: Body, boundary: String, maxBytes: Int) async throws -> Contents
    where Body.Element == ByteBuffer {
        let collector = PartCollector()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in collector.header(name, value) }
        parser.onBody = { buffer in collector.body(buffer) }
        parser.onPartComplete = { collector.complete() }
        var received = 0
        for try await chunk in body {
            received += chunk.readableBytes
            guard received <= maxBytes else { throw ServiceError(.bodyTooLarge(limit: maxBytes)) }
            do {
                try parser.execute(chunk)
            } catch {
                throw ServiceError(.multipart("malformed multipart body: syntax error in part \(collector.partNumber)'s headers or delimiter"))
            }
            if let error = collector.error { throw error }
        }
        guard received > 0 else { throw ServiceError(.emptyBody) }
        guard collector.partNumber > 1 || collector.isOpen else {
            throw ServiceError(.multipart("malformed multipart body: boundary '\(boundary)' not found"))
        }
        // The parser has no end-of-input call. Only in its epilogue state (after `--boundary--`) does it
        // ignore input without a callback or an error; anywhere else (inside a part's headers or
        // body, or right after a delimiter) these three bytes produce one or the other.
        let events = collector.events
        let closed = (try? parser.execute([0, 13, 0])) != nil && collector.events == events
        guard closed else {
            throw ServiceError(.multipart("malformed multipart body: part \(collector.partNumber) has no closing delimiter '--\(boundary)--'"))
        }
        return collector.contents
    }
}

/// Receives the parser's callbacks for one body.
private final class PartCollector {
    var contents = Multipart.Contents()
    /// Callbacks so far (tells whether the parser did anything with some input).
    var events = 0
    /// 1-based number of the part being read.
    var partNumber = 1
    /// Whether the current part has produced headers or bytes.
    var isOpen = false
    var error: ServiceError?
    private var headers: [(name: String, value: String)] = []
    private var bytes: [UInt8] = []
    private var isFile: Bool?

    func header(_ name: String, _ value: String) {
        events += 1
        isOpen = true
        headers.append((name.lowercased(), value))
    }

    func body(_ buffer: ByteBuffer) {
        events += 1
        isOpen = true
        if isFile == nil { isFile = classify() }
        if isFile == true { bytes += buffer.readableBytesView }
    }

    func complete() {
        events += 1
        if isFile == nil { isFile = classify() }
        let disposition = headers.last { $0.name == "content-disposition" }.flatMap { try? HeaderValue(parsing: $0.value) }
        let name = disposition?.parameters["filename"] ?? disposition?.parameters["name"] ?? "part \(partNumber)"
        if isFile == true {
            contents.files.append(.init(name: name, bytes: bytes))
        } else {
            contents.ignoredFields.append(name)
        }
        partNumber += 1
        isOpen = false
        headers = []
        bytes = []
        isFile = nil
    }

    private func classify() -> Bool {
        for (name, value) in headers {
            if name == "content-disposition" {
                do {
                    if try HeaderValue(parsing: value).parameters["filename"] != nil { return true }
                } catch {
                    self.error = ServiceError(.multipart("part \(partNumber): \(error.message)"))
                }
            }
            if name == "content-type" {
                let type = value.lowercased()
                if type.hasPrefix("image/") || type.hasPrefix("application/octet-stream") { return true }
            }
        }
        return false
    }
}
