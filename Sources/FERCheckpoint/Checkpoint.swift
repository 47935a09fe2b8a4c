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

/// One tensor of a checkpoint: name, dtype and shape, and its values contiguous (row-major) and
/// little-endian when asked for.
///
/// Tensors stored contiguous and little-endian point straight into the memory-mapped file. The
/// values of every other tensor are produced the first time they are asked for (never at load, so
/// listing a checkpoint reads no tensor data): a deflated zip entry is inflated, a transposed,
/// strided or zero-stride view is gathered, big-endian data is swapped. What that allocates is
/// charged to the checkpoint's copy budget (see ``Checkpoint``); a tensor over it throws
/// `.limitExceeded` naming the tensor, and the result is kept, so a second read costs nothing.
/// The conversions (`floats()`, `doubles()`, `int64s()`, `bytes()`) return new arrays that the
/// caller owns, sized by `count` and `byteCount`, which are known before anything is read.
public struct CheckpointTensor: Sendable {
    /// Canonical name, as `model.state_dict()` would give it (`module.` prefixes removed).
    public let name: String
    /// Element type as stored.
    public let dtype: TensorDType
    /// Dimensions, outermost first; `[]` for a 0-d tensor.
    public let shape: [Int]
    /// Byte length of the contiguous data: `count * dtype.byteSize`.
    public let byteCount: Int
    let source: TensorSource

    init(name: String, dtype: TensorDType, shape: [Int], byteCount: Int, source: TensorSource) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
        self.source = source
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
        let block = bytes.withUnsafeBytes { ByteBlock(copying: $0) }
        self.init(name: name, dtype: dtype, shape: shape, byteCount: bytes.count,
                  source: .ready(block, byteOffset: 0, zeroCopy: false))
    }

    /// Number of elements: the product of `shape` (1 for a 0-d tensor).
    public var count: Int { shape.reduce(1, *) }

    /// Whether the values are a view of the file mapping (or of the inflated zip entry) rather than
    /// a copy gathered for this tensor (strided views, big-endian data). Known without reading them.
    public var isZeroCopy: Bool {
        switch source {
        case .ready(_, _, let zeroCopy): return zeroCopy
        case .deferred(let deferred): return deferred.layout.isView
        }
    }

    /// Calls `body` with the tensor's contiguous little-endian bytes. No copy is made when the
    /// stored tensor is already contiguous little-endian: the buffer points into the mapped file.
    /// - Throws: what producing the values throws the first time (an entry that does not inflate
    ///   to its declared size or CRC, `.limitExceeded` over the copy budget), and what `body` throws.
    public func withUnsafeRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let (block, offset) = try source.resolve()
        return try withExtendedLifetime(block) {
            try body(byteCount == 0 ? UnsafeRawBufferPointer(start: nil, count: 0)
                                    : UnsafeRawBufferPointer(rebasing: block.buffer[offset..<(offset + byteCount)]))
        }
    }

    /// The raw little-endian bytes, copied into an array.
    public func bytes() throws -> [UInt8] { try withUnsafeRawBytes { Array($0) } }

    /// The values converted to `Float`: float32 as is, float16 and bfloat16 widened exactly,
    /// float64 rounded to nearest.
    /// - Throws: `.wrongDType` for integer and bool tensors.
    public func floats() throws -> [Float] {
        guard dtype.isFloatingPoint else {
            throw CheckpointError(.wrongDType, "tensor is \(dtype.rawValue), not floating point", key: name)
        }
        let n = count
        return try withUnsafeRawBytes { raw in
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
        return try withUnsafeRawBytes { raw in
            (0..<count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        }
    }

    /// The values of an integer or bool tensor widened to `Int64`.
    /// - Throws: `.wrongDType` for floating-point tensors.
    public func int64s() throws -> [Int64] {
        guard !dtype.isFloatingPoint else {
            throw CheckpointError(.wrongDType, "tensor is \(dtype.rawValue), not an integer type", key: name)
        }
        return try withUnsafeRawBytes { raw in
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
///
/// Cost of a hostile file. Loading reads the container's index, the pickle and the tensors'
/// declared layouts, and checks every layout against its storage's declared size; it reads no
/// tensor data. Values are produced when a tensor is asked for them (see ``CheckpointTensor``),
/// and only a tensor's own storage entry is ever inflated. The memory one checkpoint may allocate
/// beyond the file itself, for inflated zip entries (`data.pkl` included) and for gathered or
/// byte-swapped tensor copies together, is its copy budget:
///
///     copyBudget = max(limits.minCopyBudget, limits.copyBudgetFactor x file size)
///                = max(64 MiB, 16 x file size) with the default limits
///
/// Reading past it throws `.limitExceeded` naming the tensor (or entry). Real checkpoints need at
/// most about their own size (re-zipped or big-endian files, transposed weights), so the factor
/// leaves a wide margin; a zero-stride view that expands a few bytes into gigabytes, or a small
/// deflated entry declaring a gigabyte, is refused before anything is allocated. A zip entry
/// never inflates past the size its headers declare (`.inflateFailed` naming the entry).
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
    private let ledger: CopyLedger

    init(container: Container, structure: String, tensors: [CheckpointTensor], metadata: [(String, String)],
         ledger: CopyLedger) throws {
        self.ledger = ledger
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

    /// Bytes this checkpoint may allocate for inflated entries and tensor copies, all together:
    /// max(`limits.minCopyBudget`, `limits.copyBudgetFactor` x the file size).
    public var copyBudget: Int { ledger.budget }

    /// Bytes allocated so far for inflated entries and tensor copies (never more than `copyBudget`).
    /// Zero after loading a file whose `data.pkl` is stored, until a tensor's values are read.
    public var copiedBytes: Int { ledger.charged }

    /// Loads the checkpoint at `path`, memory-mapped. Zip, legacy and safetensors files are
    /// recognised by content, not by extension.
    public static func load(path: String, limits: ImportLimits = .init()) throws -> Checkpoint {
        do {
            return try load(block: try ByteBlock(mapping: path), limits: limits, file: path)
        } catch let error as CheckpointError {
            throw error.adding(file: path)
        }
    }

    /// Loads a checkpoint from bytes in memory (copied once into an aligned block).
    public static func load(bytes: [UInt8], limits: ImportLimits = .init()) throws -> Checkpoint {
        try load(block: bytes.withUnsafeBytes { ByteBlock(copying: $0) }, limits: limits, file: nil)
    }

    /// `file` names the file in errors thrown later, when a tensor's values are produced.
    static func load(block: ByteBlock, limits: ImportLimits, file: String?) throws -> Checkpoint {
        let bytes = block.buffer
        let ledger = CopyLedger(fileSize: bytes.count, limits: limits, file: file)
        func startsWith(_ prefix: [UInt8]) -> Bool {
            bytes.count >= prefix.count && zip(bytes.prefix(prefix.count), prefix).allSatisfy { $0 == $1 }
        }
        if bytes.isEmpty {
            throw CheckpointError(.unrecognizedFormat, "the file is empty", offset: 0)
        }
        if startsWith([0x50, 0x4b, 0x03, 0x04]) || startsWith([0x50, 0x4b, 0x05, 0x06]) {
            return try TorchZip.load(block: block, limits: limits, ledger: ledger)
        }
        if startsWith(Array("version https://git-lfs".utf8)) {
            throw CheckpointError(.gitLFSPointer,
                                  "this is a Git LFS pointer file, not the weights: run `git lfs pull` (or download the real file)",
                                  offset: 0)
        }
        if startsWith([0x80, 0x02, 0x8a, 0x0a]) || startsWith([0x80]) && bytes.count > 1 && bytes[1] <= 5 {
            return try LegacyFormat.load(block: block, limits: limits, ledger: ledger)
        }
        if SafeTensors.looksLikeSafeTensors(bytes) {
            return try SafeTensors.read(block: block, limits: limits, ledger: ledger)
        }
        let shown = bytes.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        throw CheckpointError(.unrecognizedFormat,
                              "not a zip, legacy PyTorch or safetensors file (starts with \(shown))", offset: 0)
    }
}
