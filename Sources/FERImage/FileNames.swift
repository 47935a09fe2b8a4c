#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes on Linux, not text: `b\xe9.png` (Latin-1) is a valid name that no Swift
/// `String` holds. Paths here are kept as their bytes for every system call, and shown with each
/// byte that is not UTF-8 written as `\xNN`.
public enum FileNames {
    /// `bytes` as text for messages and JSON: valid UTF-8 as it is, other bytes as `\xNN`, and control
    /// characters (C0, DEL, C1) escaped too, so that a name holding a newline or a terminal escape can
    /// neither split a line of output nor drive the terminal: `a\nb.png` is shown as `a\x0ab.png`.
    public static func display(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self), !text.unicodeScalars.contains(where: isControl) {
            return text
        }
        var out = ""
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        loop: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                if isControl(scalar) {
                    out += scalar.value < 0x80 ? hexEscape(UInt8(scalar.value)) : "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
                offset += encoded.count
            case .error(let length):
                for b in bytes[offset..<offset + length] { out += hexEscape(b) }
                offset += length
            case .emptyInput:
                break loop
            }
        }
        return out
    }

    /// ``display(_:)`` for a name already held as a `String` (a command-line argument, a label).
    public static func display(_ text: String) -> String {
        text.unicodeScalars.contains(where: isControl) ? display(Array(text.utf8)) : text
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func hexEscape(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: false)
        return "\\x" + (hex.count == 1 ? "0" + hex : hex)
    }

    /// The raw bytes of the command-line arguments that decoded to `arguments` (as the argument
    /// parser saw them, invalid bytes replaced), in order; an argument with no such raw form (one
    /// that did not come from the command line) is taken as its UTF-8.
    public static func commandLineBytes(for arguments: [String]) -> [[UInt8]] {
        var raw: [[UInt8]] = []
        for i in 1..<Int(CommandLine.argc) {
            guard let p = CommandLine.unsafeArgv[i] else { continue }
            raw.append(Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) })
        }
        var used = [Bool](repeating: false, count: raw.count)
        return arguments.map { argument in
            for (i, bytes) in raw.enumerated() where !used[i] && String(decoding: bytes, as: UTF8.self) == argument {
                used[i] = true
                return bytes
            }
            return Array(argument.utf8)
        }
    }

    /// Calls `body` with `path` as a NUL-terminated C string.
    public static func withCString<T>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try (path + [0]).withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// The last component of `path` without its extension (`photos/t1.jpg` -> `t1`; a name that is
    /// all extension, `.hidden`, stays whole).
    public static func stem(of path: [UInt8]) -> [UInt8] {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        var name = path
        while name.count > 1, name.last == slash { name.removeLast() }
        if let i = name.lastIndex(of: slash) { name = Array(name[(i + 1)...]) }
        if let i = name.lastIndex(of: dot), i > 0 { name = Array(name[..<i]) }
        return name
    }

    /// The file `path` names (symbolic links followed), as its device and inode: two names of one
    /// file (a hard link, a symbolic link, `./a.png` and `a.png`) have the same identity. Nil when
    /// nothing is there.
    public static func identity(of path: [UInt8]) -> FileIdentity? {
        var info = stat()
        guard withCString(path, { stat($0, &info) }) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// `directory` + `/` + `name`, as bytes.
    public static func join(_ directory: [UInt8], _ name: [UInt8]) -> [UInt8] {
        directory.last == UInt8(ascii: "/") ? directory + name : directory + [UInt8(ascii: "/")] + name
    }

    /// Writes `bytes` to the file named by `path` (created with mode 0644, or truncated), through a
    /// temporary file in the same directory renamed over it, so a reader never sees half a file.
    public static func write(_ bytes: [UInt8], to path: [UInt8]) throws(FileWriteError) {
        let temporary = path + Array(".part-\(getpid())".utf8)
        let fd = withCString(temporary) { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw FileWriteError(path: display(path), reason: String(cString: strerror(errno))) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                _ = withCString(temporary) { unlink($0) }
                throw FileWriteError(path: display(path), reason: reason)
            }
            written += n
        }
        guard close(fd) == 0, withCString(temporary, { t in withCString(path) { rename(t, $0) } }) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = withCString(temporary) { unlink($0) }
            throw FileWriteError(path: display(path), reason: reason)
        }
    }

    /// Makes the directory named by `path` (and its parents) unless it exists; throws when a
    /// component is not a directory or cannot be made.
    public static func makeDirectory(_ path: [UInt8]) throws(FileWriteError) {
        var info = stat()
        if withCString(path, { stat($0, &info) }) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw FileWriteError(path: display(path), reason: "exists and is not a directory") }
            return
        }
        let parent = Array(path[..<(path.lastIndex(of: UInt8(ascii: "/")) ?? 0)])
        if !parent.isEmpty { try makeDirectory(parent) }
        guard withCString(path, { mkdir($0, 0o755) }) == 0 || errno == EEXIST else {
            throw FileWriteError(path: display(path), reason: String(cString: strerror(errno)))
        }
    }
}

/// Which file a name refers to (``FileNames/identity(of:)``).
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
}

/// A file that could not be written, with the path (shown as ``FileNames/display(_:)``) and why.
public struct FileWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot write: \(reason)" }
}
