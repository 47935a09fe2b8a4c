import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking TCP connection to 127.0.0.1 for tests that need several connections at once, partial
/// requests or exact timings. Every call blocks, so tests run them through ``offPool(_:)``, never on
/// Swift's cooperative threads (which the server under test needs).
final class RawConnection: @unchecked Sendable {
    // Safety of @unchecked Sendable: each connection is used by one thread at a time.
    private let fd: Int32
    private var pending: [UInt8] = []
    private var isClosed = false

    /// Connects, with a receive timeout of `timeout` seconds on every read.
    init(port: Int, timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawError("socket() failed: errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: .init((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw RawError("connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
    }

    deinit { if !isClosed { close(fd) } }

    /// Half-closes: the server reads end of input, and can still answer.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Closes with a reset (SO_LINGER 0), as a client that crashed or was killed.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        isClosed = true
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw RawError("send failed: errno \(errno)") }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Whether something (a response, or the end of the stream) can be read within `seconds`.
    func isReadable(within seconds: Double) -> Bool {
        if !pending.isEmpty { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, Int32(seconds * 1000)) > 0
    }

    /// Reads one chunk: nil at end of stream; throws on the receive timeout.
    private func receiveChunk() throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return nil }
        guard n > 0 else { throw RawError(errno == EAGAIN || errno == EWOULDBLOCK ? "receive timed out" : "recv failed: errno \(errno)") }
        return Array(buffer[..<n])
    }

    /// Reads one response with a Content-Length body (as the service sends); `toHead` for the answer
    /// to HEAD, whose Content-Length describes a body that is not sent.
    func readResponse(toHead: Bool = false) throws -> RawResponse {
        while true {
            if let end = pending.firstRange(of: [13, 10, 13, 10]) {
                let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let status = Int(lines[0].split(separator: " ")[1]) ?? 0
                var headers: [String: String] = [:]
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                let length = toHead ? 0 : Int(headers["content-length"] ?? "0") ?? 0
                while pending.count < end.upperBound + length {
                    guard let chunk = try receiveChunk() else { throw RawError("connection closed inside a response body") }
                    pending += chunk
                }
                let body = Array(pending[end.upperBound..<(end.upperBound + length)])
                pending.removeFirst(end.upperBound + length)
                return RawResponse(status: status, headers: headers, body: body)
            }
            guard let chunk = try receiveChunk() else { throw RawError("connection closed before a response") }
            pending += chunk
        }
    }

    /// Waits for the server to close the connection; what it sent first is returned.
    func readUntilClosed() throws -> [UInt8] {
        var all = pending
        pending = []
        while let chunk = try receiveChunk() { all += chunk }
        return all
    }

    /// One request on a fresh connection.
    static func request(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = [],
                        timeout: Double = 10) throws -> RawResponse {
        let connection = try RawConnection(port: port, timeout: timeout)
        try connection.send(requestBytes(method, path, headers: headers, body: body))
        return try connection.readResponse(toHead: method == "HEAD")
    }

    /// A request with a chunked body, cut into chunks of `chunkSize` bytes (`extra` headers after
    /// Transfer-Encoding, e.g. a Content-Length to make it contradict itself).
    static func chunkedRequestBytes(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8],
                                    chunkSize: Int = 4096) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        var bytes = Array((head + "\r\n").utf8)
        var offset = 0
        while offset < body.count {
            let chunk = body[offset..<min(body.count, offset + chunkSize)]
            bytes += Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + [13, 10]
            offset += chunk.count
        }
        return bytes + Array("0\r\n\r\n".utf8)
    }

    static func requestBytes(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        return Array((head + "\r\n").utf8) + body
    }
}

struct RawResponse {
    let status: Int
    let headers: [String: String]
    let body: [UInt8]

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    var errorMessage: String { (json["error"] as? [String: Any])?["message"] as? String ?? "" }
}

struct RawError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking `work` on a thread of its own and awaits its result.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Seconds since `start` (a `DispatchTime.now().uptimeNanoseconds` reading).
func secondsSince(_ start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
