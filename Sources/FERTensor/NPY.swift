import Foundation

/// NumPy's `.npy` format, as far as the runtime needs it: float arrays in C order.
///
/// Layout (format versions 1.0, 2.0 and 3.0):
/// ```
/// "\x93NUMPY" major minor  header-length (u16 LE for 1.x, u32 LE for 2.x/3.x)
/// header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, C, H, W), }
///         padded with spaces and a newline so the data starts on a 64-byte boundary
/// data:   the values, row-major
/// ```
/// Reading accepts little- and big-endian float16/32/64 (`<f2 <f4 <f8 >f4 ...`) and converts to
/// float32; anything else (integers, Fortran order, object arrays, a short data section) is refused
/// with an ``NPYError`` that says which.
public enum NPY {
    /// Reads the `.npy` file at `path`.
    public static func read(path: String) throws -> Tensor {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw NPYError(path: path, problem: FileManager.default.fileExists(atPath: path)
                           ? "cannot be read" : "no such file")
        }
        do { return try decode([UInt8](contents)) } catch var error as NPYError {
            error.path = path
            throw error
        }
    }

    /// Decodes `.npy` bytes.
    public static func decode(_ bytes: [UInt8]) throws -> Tensor {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw NPYError(problem: "not a NumPy .npy file (bad magic)")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYError(problem: "truncated header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            headerStart = 12
        default:
            throw NPYError(problem: "unsupported .npy version \(major).\(bytes[7])")
        }
        guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count else {
            throw NPYError(problem: "truncated header (declares \(headerLength) bytes)")
        }
        guard let header = String(bytes: bytes[headerStart..<headerStart + headerLength], encoding: .utf8) else {
            throw NPYError(problem: "header is not text")
        }
        let fields = try parseHeader(header)
        if fields.fortranOrder { throw NPYError(problem: "Fortran-order arrays are not supported; save with np.ascontiguousarray") }
        let (width, bigEndian) = try elementType(fields.descr)
        var count = 1
        for extent in fields.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: extent)
            guard !overflow, product <= 1 << 34 else { throw NPYError(problem: "shape \(fields.shape) is too large") }
            count = product
        }
        let dataStart = headerStart + headerLength
        let needed = count * width
        guard bytes.count - dataStart >= needed else {
            throw NPYError(problem: "data is truncated: shape \(fields.shape) needs \(needed) bytes, file has \(bytes.count - dataStart) after the header")
        }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart
            for i in 0..<count {
                let p = base + i * width
                switch width {
                case 2:
                    var bits = p.loadUnaligned(as: UInt16.self)
                    bits = bigEndian ? UInt16(bigEndian: bits) : UInt16(littleEndian: bits)
                    values[i] = Float(Float16(bitPattern: bits))
                case 4:
                    var bits = p.loadUnaligned(as: UInt32.self)
                    bits = bigEndian ? UInt32(bigEndian: bits) : UInt32(littleEndian: bits)
                    values[i] = Float(bitPattern: bits)
                default:
                    var bits = p.loadUnaligned(as: UInt64.self)
                    bits = bigEndian ? UInt64(bigEndian: bits) : UInt64(littleEndian: bits)
                    values[i] = Float(Double(bitPattern: bits))
                }
            }
        }
        return Tensor(shape: fields.shape, data: values)
    }

    /// Encodes `tensor` as a version 1.0 `.npy` file of little-endian float32.
    public static func encode(_ tensor: Tensor) -> [UInt8] {
        let shapeText = tensor.shape.count == 1
            ? "(\(tensor.shape[0]),)"
            : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
        let length = header.utf8.count
        out += [UInt8(length & 0xFF), UInt8(length >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + tensor.count * 4)
        for value in tensor.data {
            let bits = value.bitPattern.littleEndian
            out += [UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
        }
        return out
    }

    /// Writes `tensor` to `path` as float32 `.npy`.
    public static func write(_ tensor: Tensor, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(encode(tensor))) else {
            throw NPYError(path: path, problem: "cannot be written")
        }
    }

    private struct Header { var descr: String; var fortranOrder: Bool; var shape: [Int] }

    // The header is a Python dict literal written by NumPy; this reads exactly the three keys.
    private static func parseHeader(_ text: String) throws -> Header {
        func value(of key: String) throws -> Substring {
            guard let keyRange = text.range(of: "'\(key)':") else {
                throw NPYError(problem: "header has no '\(key)' entry")
            }
            return text[keyRange.upperBound...].drop(while: { $0 == " " })
        }
        let descrText = try value(of: "descr")
        guard descrText.first == "'", let end = descrText.dropFirst().firstIndex(of: "'") else {
            throw NPYError(problem: "header's 'descr' is not a simple type string")
        }
        let descr = String(descrText[descrText.index(after: descrText.startIndex)..<end])
        let fortran = try value(of: "fortran_order").hasPrefix("True")
        let shapeText = try value(of: "shape")
        guard shapeText.first == "(", let close = shapeText.firstIndex(of: ")") else {
            throw NPYError(problem: "header's 'shape' is not a tuple")
        }
        let inner = shapeText[shapeText.index(after: shapeText.startIndex)..<close]
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let extent = Int(trimmed), extent >= 0 else {
                throw NPYError(problem: "header's shape entry '\(trimmed)' is not a size")
            }
            shape.append(extent)
        }
        return Header(descr: descr, fortranOrder: fortran, shape: shape)
    }

    private static func elementType(_ descr: String) throws -> (width: Int, bigEndian: Bool) {
        switch descr {
        case "<f2", "=f2": return (2, false)
        case ">f2": return (2, true)
        case "<f4", "=f4": return (4, false)
        case ">f4": return (4, true)
        case "<f8", "=f8": return (8, false)
        case ">f8": return (8, true)
        default:
            throw NPYError(problem: "element type '\(descr)' is not a float array (expected float32, e.g. arr.astype(np.float32))")
        }
    }
}

/// A `.npy` file that cannot be read, with the file and the reason.
public struct NPYError: Error, CustomStringConvertible {
    /// The file, when the error came from reading one.
    public var path: String?
    /// What is wrong.
    public var problem: String

    public init(path: String? = nil, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.map { "\($0): \(problem)" } ?? problem }
}
