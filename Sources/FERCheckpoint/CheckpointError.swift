/// The one error type of the checkpoint importer.
///
/// Every refusal says what went wrong (`kind` and `message`) and where: the file, the container
/// entry (a zip member such as `archive/data.pkl`, or a section of a legacy file), the key of the
/// tensor or value being decoded, the pickle opcode, and the byte offset. `offset` counts bytes
/// from the start of `entry` when an entry is named, otherwise from the start of the file.
public struct CheckpointError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of problem the importer found.
    public enum Kind: String, Sendable {
        /// The file could not be opened, sized or mapped.
        case io
        /// The bytes end before a structure that they declare.
        case truncated
        /// The file is not a checkpoint format this importer knows.
        case unrecognizedFormat
        /// The file is a Git LFS pointer, not the weights it points to.
        case gitLFSPointer
        /// The zip archive is a TorchScript module (`torch.jit.save`), not a `torch.save` checkpoint.
        case torchScriptArchive
        /// The zip container is malformed (records, sizes, offsets, names).
        case corruptZip
        /// A zip entry uses a compression method or flag this reader does not implement.
        case unsupportedZipFeature
        /// A deflated entry failed to inflate, or inflated to a different size or CRC.
        case inflateFailed
        /// An entry the format requires (data.pkl, a storage) is absent.
        case missingEntry
        /// The pickle stream is malformed: stack underflow, wrong operand types, missing STOP...
        case corruptPickle
        /// A pickle opcode this safe machine does not implement.
        case unsupportedOpcode
        /// A GLOBAL names something outside the allow-list, or a class is used as data.
        case disallowedGlobal
        /// REDUCE, NEWOBJ or BUILD applied to something that may not be called or built.
        case disallowedCall
        /// A configured limit (memo, depth, widths, counts, sizes) was exceeded.
        case limitExceeded
        /// A tensor reaches outside its storage, or a storage outside its entry.
        case storageOutOfBounds
        /// A tensor's size, stride, offset or dtype is invalid.
        case invalidTensor
        /// The decoded object is not a structure that holds model tensors.
        case unrecognizedStructure
        /// Two tensors end up with the same canonical name.
        case duplicateTensor
        /// The legacy format's header pickles (magic, version, sys_info) are not as expected.
        case corruptLegacyHeader
        /// A safetensors header or offset table is malformed.
        case corruptSafetensors
        /// A value was asked for in a form its dtype does not have (e.g. floats of an int64 tensor).
        case wrongDType
    }

    /// What went wrong.
    public let kind: Kind
    /// A sentence naming the problem.
    public let message: String
    /// The file being read, when known.
    public var file: String?
    /// The container entry (zip member or legacy section) being read, when known.
    public var entry: String?
    /// The key (tensor name, dict key, storage key) being decoded, when known.
    public var key: String?
    /// The pickle opcode being executed, when known (e.g. `REDUCE (0x52)`).
    public var opcode: String?
    /// Byte offset of the problem: within `entry` when it is set, otherwise within the file.
    public var offset: Int?
    /// Byte offset of the problem in the file, when it differs from `offset` (problems inside a
    /// zip entry stored uncompressed, and zip records of a named entry).
    public var fileOffset: Int?

    /// Creates an error; context fields are usually filled in as it travels outwards.
    public init(_ kind: Kind, _ message: String, entry: String? = nil, key: String? = nil,
                opcode: String? = nil, offset: Int? = nil, fileOffset: Int? = nil, file: String? = nil) {
        self.kind = kind
        self.message = message
        self.entry = entry
        self.key = key
        self.opcode = opcode
        self.offset = offset
        self.fileOffset = fileOffset
        self.file = file
    }

    /// `kind: message [key 'k', opcode OP (0xNN), byte N of ENTRY, file byte M, file PATH]`.
    public var description: String {
        var parts: [String] = []
        if let key { parts.append("key '\(key)'") }
        if let opcode { parts.append("opcode \(opcode)") }
        if let offset {
            parts.append(entry.map { "byte \(offset) of \($0)" } ?? "byte \(offset)")
        } else if let entry {
            parts.append("entry \(entry)")
        }
        if let fileOffset { parts.append("file byte \(fileOffset)") }
        if let file { parts.append("file \(file)") }
        let context = parts.isEmpty ? "" : " [" + parts.joined(separator: ", ") + "]"
        return "\(kind.rawValue): \(message)\(context)"
    }

    /// Returns a copy with missing context fields filled in (existing ones win).
    func adding(file: String? = nil, entry: String? = nil, key: String? = nil, fileOffset: Int? = nil) -> CheckpointError {
        var copy = self
        if copy.file == nil { copy.file = file }
        if copy.fileOffset == nil { copy.fileOffset = fileOffset }
        if copy.entry == nil { copy.entry = entry }
        if copy.key == nil { copy.key = key }
        return copy
    }
}

/// Bounds on what a checkpoint may make the importer do. The defaults admit every real
/// checkpoint seen so far with a wide margin and stop hostile files early.
public struct ImportLimits: Sendable {
    /// Most memo entries a pickle stream may create (BINPUT / LONG_BINPUT / MEMOIZE).
    public var maxMemoEntries: Int = 4_000_000
    /// Deepest nesting the structure walkers follow (dicts in dicts, modules in modules), and the
    /// most MARKs open at once.
    public var maxNestingDepth: Int = 256
    /// Most values on the pickle stack at once.
    public var maxStackSize: Int = 4_000_000
    /// Longest string or bytes value in a pickle, in bytes.
    public var maxStringBytes: Int = 64 << 20
    /// Widest integer (LONG1 / LONG4) in bytes; wider than 8 bytes is kept as text.
    public var maxIntegerBytes: Int = 64
    /// Most container elements (tuple, list, dict, set items) a pickle may create in total.
    public var maxElements: Int = 50_000_000
    /// Largest single tensor or storage, in bytes.
    public var maxTensorBytes: Int = 16 << 30
    /// Highest tensor rank.
    public var maxRank: Int = 32
    /// Most entries in a zip archive's central directory.
    public var maxZipEntries: Int = 1_000_000
    /// Most tensors in one checkpoint.
    public var maxTensors: Int = 1_000_000
    /// With `minCopyBudget`, the copy budget: the bytes one checkpoint may allocate for inflated zip
    /// entries and tensor copies (gathered strided or zero-stride views, byte-swapped data), all
    /// together, is max(`minCopyBudget`, `copyBudgetFactor` x the file size). See ``Checkpoint``.
    public var copyBudgetFactor: Int = 16
    /// The copy budget of small files (see `copyBudgetFactor`).
    public var minCopyBudget: Int = 64 << 20

    /// The defaults.
    public init() {}

    /// The copy budget of a file of `fileSize` bytes: max(`minCopyBudget`, `copyBudgetFactor` x
    /// `fileSize`), saturating instead of overflowing.
    public func copyBudget(fileSize: Int) -> Int {
        let (scaled, overflow) = max(0, copyBudgetFactor).multipliedReportingOverflow(by: max(0, fileSize))
        return max(minCopyBudget, overflow ? Int.max : scaled)
    }
}
