#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors format, read and written.
///
///     [u64 LE header length N][N bytes of JSON header, space-padded][data]
///     header: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
///              "__metadata__": {"key": "value", ...}}
///
/// Offsets are relative to the start of the data section. The reader checks that every tensor's
/// range lies inside the data, matches its dtype and shape exactly, and that ranges do not overlap;
/// a key repeated in any JSON object of the header is refused as a duplicate, naming it.
public enum SafeTensors {
    /// Writes `tensors` (contiguous little-endian bytes each) with `metadata` to `path`, in order.
    /// - Throws: `.invalidTensor` when a tensor's byte count disagrees with its dtype and shape,
    ///   `.io` when the file cannot be written.
    public static func write(_ tensors: [(name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8])],
                             metadata: [String: String], to path: String) throws {
        var entries: [(name: String, dtype: TensorDType, shape: [Int], count: Int)] = []
        for t in tensors { entries.append((t.name, t.dtype, t.shape, t.bytes.count)) }
        try write(entries, metadata: metadata, to: path) { i, body in try tensors[i].bytes.withUnsafeBytes(body) }
    }

    /// Writes a checkpoint's tensors unchanged (names, dtypes, shapes, bytes) with `metadata`.
    public static func write(_ tensors: [CheckpointTensor], metadata: [String: String], to path: String) throws {
        let entries = tensors.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape, count: $0.byteCount) }
        try write(entries, metadata: metadata, to: path) { i, body in try tensors[i].withUnsafeRawBytes(body) }
    }

    static func write(_ entries: [(name: String, dtype: TensorDType, shape: [Int], count: Int)], metadata: [String: String],
                      to path: String, bytes: (Int, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        var seen = Set<String>()
        for e in entries {
            guard seen.insert(e.name).inserted, e.name != "__metadata__" else {
                throw CheckpointError(.invalidTensor, "duplicate or reserved tensor name", key: e.name)
            }
            var n = 1
            for d in e.shape {
                guard d >= 0 else { throw CheckpointError(.invalidTensor, "negative dimension in \(e.shape)", key: e.name) }
                n = try checkedMul(n, d, "element count")
            }
            guard try checkedMul(n, e.dtype.byteSize, "byte count") == e.count else {
                throw CheckpointError(.invalidTensor, "\(e.count) bytes for \(e.dtype.rawValue) \(e.shape)", key: e.name)
            }
            if !first { header += "," }
            first = false
            let shape = e.shape.map(String.init).joined(separator: ",")
            header += "\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.safetensorsCode)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.count)]}"
            offset += e.count
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        guard let file = fopen(path, "wb") else {
            throw CheckpointError(.io, "cannot create: \(String(cString: strerror(errno)))", file: path)
        }
        var ok = true
        var length = UInt64(headerBytes.count).littleEndian
        ok = ok && withUnsafeBytes(of: &length) { fwrite($0.baseAddress, 1, 8, file) == 8 }
        ok = ok && headerBytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        for i in entries.indices where ok {
            try bytes(i) { raw in
                if raw.count > 0 { ok = fwrite(raw.baseAddress, 1, raw.count, file) == raw.count }
            }
        }
        ok = (fclose(file) == 0) && ok
        guard ok else { throw CheckpointError(.io, "write failed: \(String(cString: strerror(errno)))", file: path) }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func looksLikeSafeTensors(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 10 else { return false }
        let n = ByteReader.uintLE(bytes, at: 0, width: 8)
        return n >= 2 && n <= UInt64(bytes.count - 8) && bytes[8] == UInt8(ascii: "{")
    }

    static func read(block: ByteBlock, limits: ImportLimits, ledger: CopyLedger) throws -> Checkpoint {
        let bytes = block.buffer
        let headerLength = Int(try ByteReader.read(bytes, at: 0, width: 8, "safetensors header length"))
        guard headerLength <= bytes.count - 8, headerLength <= 100 << 20 else {
            throw CheckpointError(.corruptSafetensors, "header length \(headerLength) exceeds the file", offset: 0)
        }
        var parser = JSONParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)]), base: 8,
                                maxDepth: limits.maxNestingDepth)
        let root = try parser.parseDocument()
        guard case .object(let fields) = root else {
            throw CheckpointError(.corruptSafetensors, "header is not a JSON object", offset: 8)
        }
        let dataStart = 8 + headerLength
        let dataCount = bytes.count - dataStart
        var metadata: [(String, String)] = []
        var parsed: [(name: String, dtype: TensorDType, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in fields {
            if name == "__metadata__" {
                guard case .object(let items) = value else {
                    throw CheckpointError(.corruptSafetensors, "__metadata__ is not an object", key: name)
                }
                for (k, v) in items {
                    guard case .string(let s) = v else {
                        throw CheckpointError(.corruptSafetensors, "metadata value is not a string", key: k)
                    }
                    metadata.append((k, s))
                }
                continue
            }
            guard case .object(let info) = value,
                  case .string(let code)? = info.first(where: { $0.0 == "dtype" })?.1,
                  case .array(let shapeValues)? = info.first(where: { $0.0 == "shape" })?.1,
                  case .array(let offsetValues)? = info.first(where: { $0.0 == "data_offsets" })?.1 else {
                throw CheckpointError(.corruptSafetensors, "tensor entry lacks dtype, shape or data_offsets", key: name)
            }
            guard let dtype = TensorDType(safetensorsCode: code) else {
                throw CheckpointError(.corruptSafetensors, "unsupported dtype '\(code)'", key: name)
            }
            var shape: [Int] = []
            for v in shapeValues {
                guard case .int(let d) = v, d >= 0 else { throw CheckpointError(.corruptSafetensors, "bad shape", key: name) }
                shape.append(d)
            }
            guard shape.count <= limits.maxRank else {
                throw CheckpointError(.limitExceeded, "rank \(shape.count) exceeds \(limits.maxRank)", key: name)
            }
            guard offsetValues.count == 2, case .int(let begin) = offsetValues[0], case .int(let end) = offsetValues[1],
                  begin >= 0, begin <= end, end <= dataCount else {
                throw CheckpointError(.storageOutOfBounds, "data_offsets outside the \(dataCount)-byte data section", key: name)
            }
            var n = 1
            for d in shape { n = try checkedMul(n, d, "element count") }
            guard try checkedMul(n, dtype.byteSize, "byte count") == end - begin else {
                throw CheckpointError(.corruptSafetensors, "\(end - begin) bytes for \(dtype.rawValue) \(shape)", key: name)
            }
            guard end - begin <= limits.maxTensorBytes else {
                throw CheckpointError(.limitExceeded, "tensor of \(end - begin) bytes", key: name)
            }
            parsed.append((name, dtype, shape, begin, end))
        }
        parsed.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.end < $1.end) }
        var previous: (name: String, end: Int) = ("", 0)
        for p in parsed where p.end > p.begin {
            guard p.begin >= previous.end else {
                throw CheckpointError(.corruptSafetensors, "tensor data overlaps that of '\(previous.name)'", key: p.name,
                                      offset: dataStart + p.begin)
            }
            previous = (p.name, p.end)
        }
        let tensors = parsed.map {
            CheckpointTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, byteCount: $0.end - $0.begin,
                             source: .ready(block, byteOffset: dataStart + $0.begin, zeroCopy: true))
        }
        return try Checkpoint(container: .safetensors, structure: "safetensors", tensors: tensors, metadata: metadata,
                              ledger: ledger)
    }
}

/// A strict JSON parser for safetensors headers: objects (order kept), arrays, strings,
/// integers, and (skipped-over) floats, booleans and null. Errors carry the file offset.
struct JSONParser {
    indirect enum Value {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        case int(Int)
        case other
    }

    let bytes: UnsafeRawBufferPointer
    let base: Int
    let maxDepth: Int
    var position = 0

    init(bytes: UnsafeRawBufferPointer, base: Int, maxDepth: Int) {
        self.bytes = bytes
        self.base = base
        self.maxDepth = maxDepth
    }

    func fail(_ message: String) -> CheckpointError {
        CheckpointError(.corruptSafetensors, "header JSON: \(message)", offset: base + position)
    }

    mutating func skipSpace() {
        while position < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[position]) { position += 1 }
    }

    mutating func parseDocument() throws -> Value {
        let v = try parseValue(depth: 0)
        skipSpace()
        guard position == bytes.count else { throw fail("trailing characters") }
        return v
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard position < bytes.count, bytes[position] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
        position += 1
    }

    mutating func parseValue(depth: Int) throws -> Value {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        skipSpace()
        guard position < bytes.count else { throw fail("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            position += 1
            var fields: [(String, Value)] = []
            var keys = Set<String>()
            skipSpace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(fields) }
            while true {
                skipSpace()
                let keyStart = position
                let key = try parseString()
                // A repeated key would make a tensor name (or a field) mean two things.
                guard keys.insert(key).inserted else {
                    throw CheckpointError(.corruptSafetensors, "header JSON: duplicate key '\(key)'", key: key,
                                          offset: base + keyStart)
                }
                try expect(UInt8(ascii: ":"))
                fields.append((key, try parseValue(depth: depth + 1)))
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(fields) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            position += 1
            var items: [Value] = []
            skipSpace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
            while true {
                items.append(try parseValue(depth: depth + 1))
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = position
            var isInt = true
            while position < bytes.count, "-+.eE0123456789".utf8.contains(bytes[position]) {
                if !(bytes[position] >= 0x30 && bytes[position] <= 0x39) && !(position == start && bytes[position] == UInt8(ascii: "-")) {
                    isInt = false
                }
                position += 1
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            if isInt {
                guard let n = Int(text) else { throw fail("integer '\(text.prefix(30))' out of range") }
                return .int(n)
            }
            guard Double(text) != nil else { throw fail("bad number '\(text.prefix(30))'") }
            return .other
        default:
            for word in ["true", "false", "null"] {
                let w = Array(word.utf8)
                if position + w.count <= bytes.count, zip(bytes[position..<(position + w.count)], w).allSatisfy({ $0 == $1 }) {
                    position += w.count
                    return .other
                }
            }
            throw fail("unexpected character")
        }
    }

    mutating func parseString() throws -> String {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected a string") }
        position += 1
        var out: [UInt8] = []
        while true {
            guard position < bytes.count else { throw fail("unterminated string") }
            let c = bytes[position]
            position += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard position < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard position + 2 <= bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate")
                    }
                    position += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: throw fail("invalid escape")
            }
        }
        guard let s = out.withUnsafeBytes({ validUTF8($0) }) else { throw fail("string is not UTF-8") }
        return s
    }

    mutating func hex4() throws -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[position]
            position += 1
            let digit: UInt32
            switch c {
            case 0x30...0x39: digit = UInt32(c - 0x30)
            case 0x41...0x46: digit = UInt32(c - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(c - 0x61 + 10)
            default: throw fail("bad hex digit")
            }
            v = v << 4 | digit
        }
        return v
    }
}
