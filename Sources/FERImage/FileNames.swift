#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes on Linux, not text: `b\xe9.png` (Latin-1) is a valid name that no Swift
/// `String` holds. Paths here are kept as their bytes for every system call, and shown with each
/// byte that is not UTF-8 written as `\xNN`.
public enum FileNames {
    /// `bytes` as text for messages and JSON: valid UTF-8 as it is, other bytes as `\xNN`.
    public static func display(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var out = ""
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        loop: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                out.unicodeScalars.append(Unicode.UTF8.decode(encoded))
                offset += encoded.count
            case .error(let length):
                for b in bytes[offset..<offset + length] {
                    let hex = String(b, radix: 16, uppercase: false)
                    out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
                }
                offset += length
            case .emptyInput:
                break loop
            }
        }
        return out
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
    static func withCString<T>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try (path + [0]).withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }
}
