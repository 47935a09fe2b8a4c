#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Tensor values, produced on demand.
//
// At load, `Materializer.plan` checks a tensor's layout (dtype, size, stride, offset) against the
// DECLARED size of its storage and decides where its values will come from, reading no data:
//  - contiguous little-endian in a stored zip entry, a legacy file or a safetensors file: a view of
//    the mapped file, ready at once (`TensorSource.ready`);
//  - anything else (a deflated entry, a strided or zero-stride view, big-endian data): a
//    `DeferredTensor`, resolved the first time its values are asked for.
// Resolving inflates the storage's entry once (shared by every tensor of that storage) and gathers
// or swaps into a copy when the layout needs one. Both allocations are charged, before they are
// made, to the checkpoint's `CopyLedger`, which refuses what would take the total past the copy
// budget (see `Checkpoint`); results are kept, so a second read neither allocates nor charges.

/// The copy budget of one checkpoint and what has been charged to it. Its lock also guards the
/// lazily produced blocks of the storages and tensors that share it.
final class CopyLedger: @unchecked Sendable {
    // Safety of @unchecked Sendable: `charged` and the blocks cached by `StorageBytes` and
    // `DeferredTensor` are only read and written with `mutex` held (`withLock`).
    let budget: Int
    let fileSize: Int
    /// How the budget was set, for messages.
    let limits: ImportLimits
    /// The file, for errors thrown after `load` returned.
    let file: String?
    private var chargedBytes = 0
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init(fileSize: Int, limits: ImportLimits, file: String?) {
        budget = limits.copyBudget(fileSize: fileSize)
        self.fileSize = fileSize
        self.limits = limits
        self.file = file
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    var charged: Int { withLock { chargedBytes } }

    /// Records an allocation of `bytes` that is about to be made (`what`, e.g. "inflating entry X"),
    /// or throws `.limitExceeded` if it would take the total past the budget. Call with the lock held.
    func chargeLocked(_ bytes: Int, _ what: @autoclosure () -> String, entry: String?, key: String?) throws {
        guard bytes <= budget - chargedBytes else {
            throw CheckpointError(
                .limitExceeded,
                "\(what()) needs \(bytes) bytes, which with the \(chargedBytes) already allocated exceeds the checkpoint's copy budget of \(budget) bytes (max(\(limits.minCopyBudget), \(limits.copyBudgetFactor) x the \(fileSize)-byte file))",
                entry: entry, key: key, file: file)
        }
        chargedBytes += bytes
    }

    /// Takes back a charge whose allocation was freed at once (an entry that failed to inflate),
    /// so that reading it again fails the same way. Call with the lock held.
    func refundLocked(_ bytes: Int) {
        chargedBytes -= bytes
    }
}

/// Where a tensor's contiguous little-endian bytes are.
enum TensorSource: Sendable {
    /// In memory now: a view of the file mapping or caller's buffer, or a copy made for the tensor.
    case ready(ByteBlock, byteOffset: Int, zeroCopy: Bool)
    /// Produced on first use.
    case deferred(DeferredTensor)

    /// The block holding the bytes and their offset in it.
    func resolve() throws -> (ByteBlock, Int) {
        switch self {
        case .ready(let block, let offset, _): return (block, offset)
        case .deferred(let deferred): return try deferred.resolve()
        }
    }
}

/// The bytes behind one storage key, as the container holds them.
final class StorageBytes: @unchecked Sendable {
    // Safety of @unchecked Sendable: `inflated` is only touched with `ledger`'s lock held.
    enum Origin {
        /// Bytes in memory: a stored zip entry or a legacy section, in the mapped file.
        case view(ByteBlock, Range<Int>)
        /// A deflated zip entry of the mapped file, inflated on first use.
        case deflated(ByteBlock, ZipEntry)
    }

    /// The entry or section, for messages.
    let entry: String
    /// Length of the (uncompressed) bytes: the entry's declared size for deflated entries.
    let count: Int
    let origin: Origin
    let ledger: CopyLedger
    private var inflated: ByteBlock?

    init(entry: String, origin: Origin, ledger: CopyLedger) {
        self.entry = entry
        self.origin = origin
        self.ledger = ledger
        switch origin {
        case .view(_, let range): count = range.count
        case .deflated(_, let zipEntry): count = zipEntry.uncompressedSize
        }
    }

    /// The block and the offset of the storage's first byte in it, inflating the entry the first
    /// time (charged to the ledger; `key` is the tensor asking, for messages). Call with the lock held.
    func resolveLocked(for key: String?) throws -> (ByteBlock, Int) {
        switch origin {
        case .view(let block, let range):
            return (block, range.lowerBound)
        case .deflated(let file, let zipEntry):
            if let inflated { return (inflated, 0) }
            try ledger.chargeLocked(zipEntry.uncompressedSize, "inflating entry '\(entry)'", entry: entry, key: key)
            let block: ByteBlock
            do {
                block = try ZipArchive.inflate(zipEntry, from: file)
            } catch let error as CheckpointError {
                ledger.refundLocked(zipEntry.uncompressedSize)
                throw error.adding(file: ledger.file, key: key)
            }
            inflated = block
            return (block, 0)
        }
    }
}

/// How a tensor's elements sit in its storage, checked at load.
struct TensorLayout {
    let dtype: TensorDType
    let shape: [Int]
    /// In elements.
    let strides: [Int]
    /// Byte offset of element 0 of the tensor from the start of the storage's bytes (legacy view
    /// offset and the tensor's storage offset included).
    let startByte: Int
    /// Elements (product of `shape`, at least 1: empty tensors are never deferred).
    let count: Int
    let byteCount: Int
    /// Row-major strides (size-1 dimensions ignored, as PyTorch does).
    let contiguous: Bool
    let swapBytes: Bool

    /// Whether the values are the storage's bytes as they are, with no copy.
    var isView: Bool { contiguous && !swapBytes }
}

/// A tensor whose values are produced the first time they are asked for.
final class DeferredTensor: @unchecked Sendable {
    // Safety of @unchecked Sendable: `copy` is only touched with `storage.ledger`'s lock held.
    let name: String
    let storage: StorageBytes
    let layout: TensorLayout
    private var copy: ByteBlock?

    init(name: String, storage: StorageBytes, layout: TensorLayout) {
        self.name = name
        self.storage = storage
        self.layout = layout
    }

    func resolve() throws -> (ByteBlock, Int) {
        try storage.ledger.withLock {
            if let copy { return (copy, 0) }
            let (block, start) = try storage.resolveLocked(for: name)
            let first = start + layout.startByte
            if layout.isView { return (block, first) }
            let shape = layout.shape.map(String.init).joined(separator: ", ")
            let strides = layout.strides.map(String.init).joined(separator: ", ")
            try storage.ledger.chargeLocked(
                layout.byteCount, "materialising \(layout.dtype.rawValue) [\(shape)] stride [\(strides)]",
                entry: storage.entry, key: name)
            let made = Materializer.gather(layout, from: block.buffer.baseAddress! + first)
            copy = made
            return (made, 0)
        }
    }
}

enum Materializer {
    /// Checks the tensor `ref` describes against its storage's declared extent, with every
    /// size and offset overflow-checked, and decides where its values will come from. Reads no
    /// tensor data: contiguous little-endian tensors of in-memory storages are views at once,
    /// everything else is deferred until its values are asked for.
    static func plan(named name: String, _ ref: TensorRef, storage: StorageRef, data: StorageBytes,
                     bigEndian: Bool, limits: ImportLimits) throws -> CheckpointTensor {
        func failure(_ kind: CheckpointError.Kind, _ message: String) -> CheckpointError {
            CheckpointError(kind, message, entry: data.entry, key: name)
        }
        let elementSize = ref.dtype.byteSize
        // The storage's extent in the tensor's elements.
        let storageBytes = data.count
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
            return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, byteCount: 0,
                                    source: .ready(ByteBlock(), byteOffset: 0, zeroCopy: true))
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
        var contiguous = true
        var expected = 1
        for i in stride(from: ref.shape.count - 1, through: 0, by: -1) where ref.shape[i] != 1 {
            if ref.strides[i] != expected { contiguous = false; break }
            expected *= ref.shape[i]
        }
        // `last < available` bounds the offset, so this cannot overflow.
        let layout = TensorLayout(dtype: ref.dtype, shape: ref.shape, strides: ref.strides,
                                  startByte: rootOffsetBytes + ref.offset * elementSize, count: count,
                                  byteCount: byteCount, contiguous: contiguous, swapBytes: bigEndian && elementSize > 1)
        if layout.isView, case .view(let block, let range) = data.origin {
            return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, byteCount: byteCount,
                                    source: .ready(block, byteOffset: range.lowerBound + layout.startByte, zeroCopy: true))
        }
        return CheckpointTensor(name: name, dtype: ref.dtype, shape: ref.shape, byteCount: byteCount,
                                source: .deferred(DeferredTensor(name: name, storage: data, layout: layout)))
    }

    /// Copies the tensor `layout` describes, starting at `src` (its element 0), into a new
    /// contiguous little-endian block, element by element (innermost dimension in a tight loop).
    /// `plan` checked that every element read lies inside the storage.
    static func gather(_ layout: TensorLayout, from src: UnsafeRawPointer) -> ByteBlock {
        let elementSize = layout.dtype.byteSize
        let byteCount = layout.byteCount
        let out = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        let block = ByteBlock(adopting: out, count: byteCount)
        let shape = layout.shape, strides = layout.strides
        let rank = shape.count
        if layout.contiguous {
            out.copyMemory(from: src, byteCount: byteCount)
        } else {
            var index = [Int](repeating: 0, count: rank)
            let inner = shape[rank - 1]
            let innerStride = strides[rank - 1] * elementSize
            var dst = out
            var outer = layout.count / inner
            while outer > 0 {
                var element = 0
                for i in 0..<(rank - 1) { element += index[i] * strides[i] }
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
                    if index[d] < shape[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
        }
        if layout.swapBytes {
            let bytes = out.assumingMemoryBound(to: UInt8.self)
            var i = 0
            while i < byteCount {
                var lo = i, hi = i + elementSize - 1
                while lo < hi { let t = bytes[lo]; bytes[lo] = bytes[hi]; bytes[hi] = t; lo += 1; hi -= 1 }
                i += elementSize
            }
        }
        return block
    }
}
