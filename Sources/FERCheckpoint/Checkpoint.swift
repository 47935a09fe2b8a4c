/// Element types a checkpoint tensor may have.
public enum TensorDType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// Whether ``CheckpointTensor/floats()`` converts this type.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64: return true
        default: return false
        }
    }

    /// The safetensors dtype code (`F32`, `BF16`, `I64`, `BOOL`, ...).
    public var safetensorsCode: String {
        switch self {
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .float64: return "F64"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }

    /// The dtype for a safetensors code, if this importer supports it.
    public init?(safetensorsCode code: String) {
        guard let match = TensorDType.allCases.first(where: { $0.safetensorsCode == code }) else { return nil }
        self = match
    }
}

/// One tensor of a checkpoint, materialised contiguous (row-major) and little-endian.
///
/// Tensors stored contiguous and little-endian point straight into the memory-mapped file (or
/// the inflated entry); transposed / strided views and big-endian files are copied once, at load.
public struct CheckpointTensor: Sendable {
    /// Canonical name, as `model.state_dict()` would give it (`module.` prefixes removed).
    public let name: String
    /// Element type as stored.
    public let dtype: TensorDType
    /// Dimensions, outermost first; `[]` for a 0-d tensor.
    public let shape: [Int]
    let block: ByteBlock
    let byteOffset: Int
    /// Byte length of the contiguous data: `count * dtype.byteSize`.
    public let byteCount: Int

    init(name: String, dtype: TensorDType, shape: [Int], block: ByteBlock, byteOffset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.block = block
        self.byteOffset = byteOffset
        self.byteCount = byteCount
    }

    /// Creates a tensor from contiguous little-endian bytes (copied).
    /// - Throws: `.invalidTensor` when `bytes.count` is not `count * dtype.byteSize`.
    public init(name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) throws {
        var count = 1
        for d in shape {
            guard d >= 0 else { throw CheckpointError(.invalidTensor, "negative dimension in \(shape)", key: name) }
            count = try checkedMul(count, d, "element count of \(shape)")
        }
        guard try checkedMul(count, dtype.byteSize, "byte count") == bytes.count else {
            throw CheckpointError(.invalidTensor, "\(bytes.count) bytes for \(dtype.rawValue) \(shape)", key: name)
        }
        self.init(name: name, dtype: dtype, shape: shape,
                  block: bytes.withUnsafeBytes { ByteBlock(copying: $0) }, byteOffset: 0, byteCount: bytes.count)
    }

    /// Number of elements: the product of `shape` (1 for a 0-d tensor).
    public var count: Int { shape.reduce(1, *) }

    /// Whether the bytes point into the file mapping (or entry) rather than a copy made at load.
    public var isZeroCopy: Bool { !block.isPrivateCopy }

    /// Calls `body` with the tensor's contiguous little-endian bytes. No copy is made: the
    /// buffer points into the mapped file when the stored tensor was already contiguous LE.
    public func withUnsafeRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let all = block.buffer
        return try body(byteCount == 0 ? UnsafeRawBufferPointer(start: nil, count: 0)
                                       : UnsafeRawBufferPointer(rebasing: all[byteOffset..<(byteOffset + byteCount)]))
    }

    /// The raw little-endian bytes, copied into an array.
    public func bytes() -> [UInt8] { withUnsafeRawBytes { Array($0) } }

    /// The values converted to `Float`: float32 as is, float16 and bfloat16 widened exactly,
    /// float64 rounded to nearest.
    /// - Throws: `.wrongDType` for integer and bool tensors.
    public func floats() throws -> [Float] {
        guard dtype.isFloatingPoint else {
            throw CheckpointError(.wrongDType, "tensor is \(dtype.rawValue), not floating point", key: name)
        }
        let n = count
        return withUnsafeRawBytes { raw in
            [Float](unsafeUninitializedCapacity: n) { out, initialized in
                switch dtype {
                case .float32:
                    #if _endian(little)
                    if n > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n * 4) }
                    #else
                    for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                    #endif
                case .float16:
                    for i in 0..<n {
                        out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    }
                case .bfloat16:
                    for i in 0..<n {
                        let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                        out[i] = Float(bitPattern: UInt32(bits) << 16)
                    }
                case .float64:
                    for i in 0..<n {
                        out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                    }
                default: break
                }
                initialized = n
            }
        }
    }

    /// The values of a float64 tensor, exactly.
    /// - Throws: `.wrongDType` for other dtypes.
    public func doubles() throws -> [Double] {
        guard dtype == .float64 else {
            throw CheckpointError(.wrongDType, "tensor is \(dtype.rawValue), not float64", key: name)
        }
        return withUnsafeRawBytes { raw in
            (0..<count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        }
    }

    /// The values of an integer or bool tensor widened to `Int64`.
    /// - Throws: `.wrongDType` for floating-point tensors.
    public func int64s() throws -> [Int64] {
        guard !dtype.isFloatingPoint else {
            throw CheckpointError(.wrongDType, "tensor is \(dtype.rawValue), not an integer type", key: name)
        }
        return withUnsafeRawBytes { raw in
            (0..<count).map { i -> Int64 in
                switch dtype {
                case .int64: return Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                case .int32: return Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case .int16: return Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                case .int8: return Int64(Int8(bitPattern: raw[i]))
                default: return Int64(raw[i])
                }
            }
        }
    }
}

/// IEEE 754 binary16 to binary32, exact (subnormals, infinities and NaN payloads included).
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    var mantissa = UInt32(h & 0x3ff)
    if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
    if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
    if mantissa == 0 { return Float(bitPattern: sign) }
    // Subnormal: normalise.
    var e: UInt32 = 113
    while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
    return Float(bitPattern: sign | (e << 23) | ((mantissa & 0x3ff) << 13))
}

/// A checkpoint file's model tensors and top-level values.
///
/// `load` detects the container (zip, legacy, safetensors), decodes the pickle with a safe
/// machine that never runs code, finds the model's state dict whatever the structure (training
/// dict, bare or nested state_dict, DataParallel prefixes, whole pickled modules) and returns the
/// tensors under the names `model.state_dict()` would give, in file order.
public struct Checkpoint: Sendable {
    /// File formats.
    public enum Container: String, Sendable { case zip, legacy, safetensors }

    /// The file format.
    public let container: Container
    /// Human-readable description of where the tensors were found.
    public let structure: String
    /// Model tensors in file order (optimizer state skipped).
    public let tensors: [CheckpointTensor]
    /// Non-tensor top-level values rendered as text; for safetensors, the `__metadata__` table.
    public let metadata: [String: String]
    /// The order of `metadata`'s keys as they appear in the file.
    public let metadataKeys: [String]
    private let index: [String: Int]

    init(container: Container, structure: String, tensors: [CheckpointTensor], metadata: [(String, String)]) throws {
        self.container = container
        self.structure = structure
        self.tensors = tensors
        var m: [String: String] = [:]
        var keys: [String] = []
        for (k, v) in metadata where m[k] == nil {
            m[k] = v
            keys.append(k)
        }
        self.metadata = m
        self.metadataKeys = keys
        var index: [String: Int] = [:]
        index.reserveCapacity(tensors.count)
        for (i, t) in tensors.enumerated() {
            guard index[t.name] == nil else {
                throw CheckpointError(.duplicateTensor, "two tensors are named '\(t.name)'", key: t.name)
            }
            index[t.name] = i
        }
        self.index = index
    }

    /// The tensor with this canonical name.
    public subscript(name: String) -> CheckpointTensor? { index[name].map { tensors[$0] } }

    /// Loads the checkpoint at `path`, memory-mapped. Zip, legacy and safetensors files are
    /// recognised by content, not by extension.
    public static func load(path: String, limits: ImportLimits = .init()) throws -> Checkpoint {
        do {
            return try load(block: try ByteBlock(mapping: path), limits: limits)
        } catch let error as CheckpointError {
            throw error.adding(file: path)
        }
    }

    /// Loads a checkpoint from bytes in memory (copied once into an aligned block).
    public static func load(bytes: [UInt8], limits: ImportLimits = .init()) throws -> Checkpoint {
        try load(block: bytes.withUnsafeBytes { ByteBlock(copying: $0) }, limits: limits)
    }

    static func load(block: ByteBlock, limits: ImportLimits) throws -> Checkpoint {
        let bytes = block.buffer
        func startsWith(_ prefix: [UInt8]) -> Bool {
            bytes.count >= prefix.count && zip(bytes.prefix(prefix.count), prefix).allSatisfy { $0 == $1 }
        }
        if bytes.isEmpty {
            throw CheckpointError(.unrecognizedFormat, "the file is empty", offset: 0)
        }
        if startsWith([0x50, 0x4b, 0x03, 0x04]) || startsWith([0x50, 0x4b, 0x05, 0x06]) {
            return try TorchZip.load(block: block, limits: limits)
        }
        if startsWith(Array("version https://git-lfs".utf8)) {
            throw CheckpointError(.gitLFSPointer,
                                  "this is a Git LFS pointer file, not the weights: run `git lfs pull` (or download the real file)",
                                  offset: 0)
        }
        if startsWith([0x80, 0x02, 0x8a, 0x0a]) || startsWith([0x80]) && bytes.count > 1 && bytes[1] <= 5 {
            return try LegacyFormat.load(block: block, limits: limits)
        }
        if SafeTensors.looksLikeSafeTensors(bytes) {
            return try SafeTensors.read(block: block, limits: limits)
        }
        let shown = bytes.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        throw CheckpointError(.unrecognizedFormat,
                              "not a zip, legacy PyTorch or safetensors file (starts with \(shown))", offset: 0)
    }
}

// MARK: - Materialising tensors

/// The bytes behind one storage key, as the container found them.
struct StorageData {
    let block: ByteBlock
    let range: Range<Int>
    let entry: String
}

enum Materializer {
    /// Produces the contiguous little-endian tensor `ref` describes, reading `data` with every
    /// access bounds-checked. Contiguous LE tensors are views (no copy).
    static func tensor(named name: String, _ ref: TensorRef, storage: StorageRef, data: StorageData,
                       bigEndian: Bool, limits: ImportLimits) throws -> CheckpointTensor {
        func failure(_ kind: CheckpointError.Kind, _ message: String) -> CheckpointError {
            CheckpointError(kind, message, entry: data.entry, key: name)
        }
        let elementSize = ref.dtype.byteSize
        // The storage's extent in the tensor's elements.
        let storageBytes = data.range.count
        let declaredBytes: Int
        if let sdtype = storage.dtype {
            guard sdtype == ref.dtype else {
                throw failure(.invalidTensor, "tensor dtype \(ref.dtype.rawValue) on a \(sdtype.rawValue) storage")
            }
            declaredBytes = try checkedMul(storage.declaredCount, elementSize, "storage size")
        } else {
            declaredBytes = storage.declaredCount
        }
        let rootOffsetBytes = try checkedMul(storage.elementOffset, elementSize, "storage view offset")
        guard rootOffsetBytes <= storageBytes, declaredBytes <= storageBytes - rootOffsetBytes else {
            throw failure(.storageOutOfBounds,
                          "storage '\(storage.key)' declares \(declaredBytes) bytes at offset \(rootOffsetBytes) but its data has only \(storageBytes)")
        }
        var count = 1
        for d in ref.shape { count = try checkedMul(count, d, "element count of \(ref.shape)") }
        let byteCount = try checkedMul(count, elementSize, "byte count of \(ref.shape)")
        guard byteCount <= limits.maxTensorBytes else {
            throw failure(.limitExceeded, "tensor of \(byteCount) bytes exceeds the \(limits.maxTensorBytes)-byte limit")
        }
        if count == 0 {
            return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, block: ByteBlock(), byteOffset: 0, byteCount: 0)
        }
        // Highest element index touched, relative to the storage start.
        var last = ref.offset
        for (d, s) in zip(ref.shape, ref.strides) {
            last = try checkedAdd(last, try checkedMul(d - 1, s, "stride extent"), "tensor extent")
        }
        let available = declaredBytes / elementSize
        guard last < available else {
            throw failure(.storageOutOfBounds,
                          "tensor \(ref.dtype.rawValue) \(ref.shape) stride \(ref.strides) at offset \(ref.offset) needs \(last + 1) elements, storage '\(storage.key)' has \(available)")
        }
        let base = data.range.lowerBound + rootOffsetBytes
        // Contiguous: strides are row-major (ignoring size-1 dimensions, as PyTorch does).
        var contiguous = true
        var expected = 1
        for i in stride(from: ref.shape.count - 1, through: 0, by: -1) where ref.shape[i] != 1 {
            if ref.strides[i] != expected { contiguous = false; break }
            expected *= ref.shape[i]
        }
        if contiguous && (!bigEndian || elementSize == 1) {
            return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, block: data.block,
                                    byteOffset: base + ref.offset * elementSize, byteCount: byteCount)
        }
        // Gather into a new buffer, element by element (innermost dimension in a tight loop).
        let out = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        let block = ByteBlock(adopting: out, count: byteCount, privateCopy: true)
        let src = data.block.buffer.baseAddress! + base
        let rank = ref.shape.count
        if contiguous {
            out.copyMemory(from: src + ref.offset * elementSize, byteCount: byteCount)
        } else {
            var index = [Int](repeating: 0, count: rank)
            let inner = ref.shape[rank - 1]
            let innerStride = ref.strides[rank - 1] * elementSize
            var dst = out
            var outer = count / inner
            while outer > 0 {
                var element = ref.offset
                for i in 0..<(rank - 1) { element += index[i] * ref.strides[i] }
                var p = src + element * elementSize
                if elementSize == 4 {
                    for _ in 0..<inner {
                        dst.storeBytes(of: p.loadUnaligned(as: UInt32.self), as: UInt32.self)
                        p += innerStride; dst += 4
                    }
                } else {
                    for _ in 0..<inner {
                        dst.copyMemory(from: p, byteCount: elementSize)
                        p += innerStride; dst += elementSize
                    }
                }
                outer -= 1
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    if index[d] < ref.shape[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
        }
        if bigEndian && elementSize > 1 {
            let bytes = out.assumingMemoryBound(to: UInt8.self)
            var i = 0
            while i < byteCount {
                var lo = i, hi = i + elementSize - 1
                while lo < hi { let t = bytes[lo]; bytes[lo] = bytes[hi]; bytes[hi] = t; lo += 1; hi -= 1 }
                i += elementSize
            }
        }
        return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, block: block, byteOffset: 0, byteCount: byteCount)
    }
}
