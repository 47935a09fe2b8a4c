#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A block of immutable bytes that tensors point into: a read-only memory mapping of a file, or
/// a heap buffer (bytes handed to `load(bytes:)`, inflated zip entries, materialised tensors).
/// Tensors keep their block alive; the mapping or buffer is released when the last one goes.
final class ByteBlock: @unchecked Sendable {
    // Safety of @unchecked Sendable: the bytes are never written after `init` returns.
    let base: UnsafeRawPointer?
    let count: Int
    private let release: Release

    private enum Release { case none, munmap, deallocate }

    /// An empty block.
    init() {
        base = nil
        count = 0
        release = .none
    }

    /// Takes ownership of `pointer` (allocated with `UnsafeMutableRawPointer.allocate`).
    init(adopting pointer: UnsafeMutableRawPointer, count: Int) {
        base = UnsafeRawPointer(pointer)
        self.count = count
        release = .deallocate
    }

    /// Copies `bytes` into a new heap block.
    convenience init(copying bytes: UnsafeRawBufferPointer) {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        if let source = bytes.baseAddress, bytes.count > 0 {
            pointer.copyMemory(from: source, byteCount: bytes.count)
        }
        self.init(adopting: pointer, count: bytes.count)
    }

    /// Maps the file at `path` read-only.
    init(mapping path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError(.io, "cannot open: \(String(cString: strerror(errno)))", file: path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw CheckpointError(.io, "cannot stat: \(String(cString: strerror(errno)))", file: path)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError(.io, "not a regular file", file: path)
        }
        let size = Int(info.st_size)
        if size == 0 {
            base = nil
            count = 0
            release = .none
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw CheckpointError(.io, "cannot map \(size) bytes: \(String(cString: strerror(errno)))", file: path)
        }
        base = UnsafeRawPointer(mapped)
        count = size
        release = .munmap
    }

    deinit {
        guard let base else { return }
        switch release {
        case .none: break
        case .munmap: munmap(UnsafeMutableRawPointer(mutating: base), count)
        case .deallocate: UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// Tells the kernel that the mapped pages read so far are not needed now. Reading the zip
    /// index touches one local header per entry, and the kernel maps the pages around each one
    /// too; for the authors' format that is megabytes of optimizer state which nothing reads
    /// again. Dropped pages of a read-only file mapping come back from the page cache on the next
    /// access, so this only lowers the resident size. A no-op for blocks that are not mappings.
    func releaseResidentPages() {
        guard release == .munmap, let base else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_DONTNEED)
    }

    /// The whole block as a buffer (valid while the block is alive).
    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// A bounds-checked little-endian cursor over raw bytes. Every read checks the remaining length
/// first and throws `.truncated` naming the offset; multi-byte reads assemble the value byte by
/// byte, so they are safe on unaligned data and independent of the host's byte order.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int
    /// Name of what is being read, for error messages.
    let entry: String?

    init(_ bytes: UnsafeRawBufferPointer, at position: Int = 0, entry: String? = nil) {
        self.bytes = bytes
        self.position = position
        self.entry = entry
    }

    var remaining: Int { bytes.count - position }
    var atEnd: Bool { position >= bytes.count }

    func truncated(_ what: String, need: Int) -> CheckpointError {
        CheckpointError(.truncated, "\(what): need \(need) bytes, only \(max(0, remaining)) left",
                        entry: entry, offset: position)
    }

    mutating func require(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else { throw truncated(what(), need: n) }
    }

    mutating func u8(_ what: @autoclosure () -> String = "byte") throws -> UInt8 {
        try require(1, what())
        defer { position += 1 }
        return bytes[position]
    }

    /// Reads an `n`-byte unsigned little-endian integer (n <= 8).
    mutating func uintLE(_ n: Int, _ what: @autoclosure () -> String) throws -> UInt64 {
        try require(n, what())
        let value = ByteReader.uintLE(bytes, at: position, width: n)
        position += n
        return value
    }

    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 { UInt16(try uintLE(2, what())) }
    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { UInt32(try uintLE(4, what())) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try uintLE(8, what()) }

    /// A view of the next `n` bytes (no copy).
    mutating func slice(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try require(n, what())
        let start = position
        position += n
        return UnsafeRawBufferPointer(rebasing: bytes[start..<(start + n)])
    }

    /// Unchecked helper: caller guarantees `offset + width <= buffer.count`.
    static func uintLE(_ buffer: UnsafeRawBufferPointer, at offset: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) {
            value = (value << 8) | UInt64(buffer[offset + i])
        }
        return value
    }

    /// Bounds-checked absolute read of an unsigned little-endian integer.
    static func read(_ buffer: UnsafeRawBufferPointer, at offset: Int, width: Int, _ what: String,
                     entry: String? = nil) throws -> UInt64 {
        guard offset >= 0, width >= 0, offset <= buffer.count - width else {
            throw CheckpointError(.truncated, "\(what): \(width) bytes at \(offset) run past the end (\(buffer.count) bytes)",
                                  entry: entry, offset: offset)
        }
        return uintLE(buffer, at: offset, width: width)
    }
}

/// Checked arithmetic for sizes declared by a file: overflow becomes a typed error.
@inline(__always)
func checkedMul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    if o { throw CheckpointError(.limitExceeded, "\(what()) overflows") }
    return r
}

@inline(__always)
func checkedAdd(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
    let (r, o) = a.addingReportingOverflow(b)
    if o { throw CheckpointError(.limitExceeded, "\(what()) overflows") }
    return r
}

/// The bytes as a String if they are valid UTF-8 (decoding repairs invalid sequences, which
/// changes the bytes, so a round-trip comparison detects them); nil otherwise.
func validUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
    let s = String(decoding: bytes, as: UTF8.self)
    return s.utf8.elementsEqual(bytes) ? s : nil
}
