#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib

// Zip container, as torch.save writes it (PKWARE APPNOTE 6.3, the parts PyTorch's writer and
// re-zipping tools use):
//
//   [local header 0x04034b50][name][extra][data] ...        one per entry
//   [central directory header 0x02014b50] ...               one per entry
//   [zip64 end of central directory record 0x06064b50]      optional
//   [zip64 end of central directory locator 0x07064b50]     optional
//   [end of central directory record 0x06054b50][comment]
//
// Sizes and the local-header offset come from the central directory (the writer uses data
// descriptors, so the local header's sizes may be zero); a field of 0xFFFFFFFF (0xFFFF for
// counts) means "look in the zip64 extra field (id 0x0001)", which lists, in this order, only
// the fields that overflowed: uncompressed size, compressed size, local-header offset.
// The data starts after the LOCAL header: offset + 30 + local name length + local extra length
// (PyTorch pads the local extra field so that data is 64-byte aligned; the central directory's
// extra length differs). Method 0 (stored) is used in place; method 8 (deflate) is inflated.
// All integers are little-endian.

/// One member of a zip archive.
struct ZipEntry {
    let name: String
    let method: UInt16
    let flags: UInt16
    let crc32: UInt32
    let compressedSize: Int
    let uncompressedSize: Int
    let localHeaderOffset: Int
    /// Offset of the entry's (possibly compressed) data in the file, from the local header.
    let dataOffset: Int
}

/// A zip archive over a block of bytes; entries are looked up by name.
struct ZipArchive {
    let block: ByteBlock
    let entries: [ZipEntry]
    private let index: [String: Int]
    let limits: ImportLimits

    init(block: ByteBlock, limits: ImportLimits) throws {
        self.block = block
        self.limits = limits
        let bytes = block.buffer
        let eocdSize = 22
        guard bytes.count >= eocdSize else {
            throw CheckpointError(.corruptZip, "file of \(bytes.count) bytes is too short for a zip end record", offset: 0)
        }
        // Find the end-of-central-directory record: it is followed only by its comment (<= 65535).
        var eocd = -1
        let lowest = max(0, bytes.count - eocdSize - 65535)
        var p = bytes.count - eocdSize
        while p >= lowest {
            if bytes[p] == 0x50, bytes[p + 1] == 0x4b, bytes[p + 2] == 0x05, bytes[p + 3] == 0x06 {
                let commentLength = Int(ByteReader.uintLE(bytes, at: p + 20, width: 2))
                if p + eocdSize + commentLength <= bytes.count { eocd = p; break }
            }
            p -= 1
        }
        guard eocd >= 0 else {
            throw CheckpointError(.corruptZip, "no end-of-central-directory record (file cut short?)", offset: bytes.count)
        }
        var entryCount = Int(ByteReader.uintLE(bytes, at: eocd + 10, width: 2))
        var directorySize = Int(ByteReader.uintLE(bytes, at: eocd + 12, width: 4))
        var directoryOffset = Int(ByteReader.uintLE(bytes, at: eocd + 16, width: 4))
        // ZIP64: the locator sits right before the end record.
        if eocd >= 20, ByteReader.uintLE(bytes, at: eocd - 20, width: 4) == 0x0706_4b50 {
            let recordOffset = try ByteReader.read(bytes, at: eocd - 20 + 8, width: 8, "zip64 locator")
            guard recordOffset <= UInt64(eocd - 20), Int(recordOffset) + 56 <= eocd - 20 else {
                throw CheckpointError(.corruptZip, "zip64 end record offset \(recordOffset) out of range", offset: eocd - 20)
            }
            let r = Int(recordOffset)
            guard ByteReader.uintLE(bytes, at: r, width: 4) == 0x0606_4b50 else {
                throw CheckpointError(.corruptZip, "no zip64 end-of-central-directory record where the locator points", offset: r)
            }
            let count64 = ByteReader.uintLE(bytes, at: r + 32, width: 8)
            let size64 = ByteReader.uintLE(bytes, at: r + 40, width: 8)
            let offset64 = ByteReader.uintLE(bytes, at: r + 48, width: 8)
            guard count64 <= UInt64(Int.max), size64 <= UInt64(bytes.count), offset64 <= UInt64(bytes.count) else {
                throw CheckpointError(.corruptZip, "zip64 end record declares impossible sizes", offset: r)
            }
            entryCount = Int(count64)
            directorySize = Int(size64)
            directoryOffset = Int(offset64)
        }
        guard entryCount <= limits.maxZipEntries else {
            throw CheckpointError(.limitExceeded, "zip declares \(entryCount) entries, limit \(limits.maxZipEntries)", offset: eocd)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset,
              entryCount <= directorySize / 46 || entryCount == 0 else {
            throw CheckpointError(.corruptZip, "central directory (offset \(directoryOffset), \(directorySize) bytes, \(entryCount) entries) does not fit in the file", offset: eocd)
        }
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[0..<(directoryOffset + directorySize)]),
                                at: directoryOffset)
        var entries: [ZipEntry] = []
        entries.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        index.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let start = reader.position
            guard try reader.u32("central directory header") == 0x0201_4b50 else {
                throw CheckpointError(.corruptZip, "bad central directory header signature", offset: start)
            }
            reader.position += 4  // versions
            let flags = try reader.u16("flags")
            let method = try reader.u16("compression method")
            reader.position += 4  // time, date
            let crc = try reader.u32("crc32")
            var compressed = UInt64(try reader.u32("compressed size"))
            var uncompressed = UInt64(try reader.u32("uncompressed size"))
            let nameLength = Int(try reader.u16("name length"))
            let extraLength = Int(try reader.u16("extra length"))
            let commentLength = Int(try reader.u16("comment length"))
            reader.position += 8  // disk, internal and external attributes
            var localOffset = UInt64(try reader.u32("local header offset"))
            let nameBytes = try reader.slice(nameLength, "entry name")
            let extra = try reader.slice(extraLength, "extra field")
            _ = try reader.slice(commentLength, "entry comment")
            let name = String(decoding: nameBytes, as: UTF8.self)
            // ZIP64 extended information.
            if compressed == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                var e = ByteReader(extra, entry: "zip64 extra field of '\(name)'")
                var found = false
                while e.remaining >= 4 {
                    let id = try e.u16("extra id")
                    let size = Int(try e.u16("extra size"))
                    var field = ByteReader(try e.slice(size, "extra field body"), entry: e.entry)
                    guard id == 0x0001 else { continue }
                    found = true
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try field.u64("zip64 uncompressed size") }
                    if compressed == 0xFFFF_FFFF { compressed = try field.u64("zip64 compressed size") }
                    if localOffset == 0xFFFF_FFFF { localOffset = try field.u64("zip64 local header offset") }
                }
                guard found else {
                    throw CheckpointError(.corruptZip, "sizes say zip64 but the entry has no zip64 extra field",
                                          entry: name, fileOffset: start)
                }
            }
            guard localOffset < UInt64(bytes.count), compressed <= UInt64(bytes.count),
                  uncompressed <= UInt64(Int.max / 2) else {
                throw CheckpointError(.corruptZip, "entry declares offset \(localOffset) / size \(compressed) beyond the file (\(bytes.count) bytes)",
                                      entry: name, fileOffset: start)
            }
            // The local header gives the real data offset.
            let local = Int(localOffset)
            guard local <= bytes.count - 30, ByteReader.uintLE(bytes, at: local, width: 4) == 0x0403_4b50 else {
                throw CheckpointError(.corruptZip, "no local header at offset \(local)", entry: name, fileOffset: local)
            }
            let localNameLength = Int(ByteReader.uintLE(bytes, at: local + 26, width: 2))
            let localExtraLength = Int(ByteReader.uintLE(bytes, at: local + 28, width: 2))
            let dataOffset = local + 30 + localNameLength + localExtraLength
            guard localNameLength == nameLength, dataOffset <= bytes.count,
                  nameLength == 0 || memcmp(bytes.baseAddress! + local + 30, nameBytes.baseAddress!, nameLength) == 0 else {
                throw CheckpointError(.corruptZip, "local header name differs from the central directory's", entry: name, fileOffset: local)
            }
            guard Int(compressed) <= bytes.count - dataOffset else {
                throw CheckpointError(.truncated, "entry data (\(compressed) bytes at \(dataOffset)) runs past the end of the file (\(bytes.count) bytes)",
                                      entry: name, fileOffset: dataOffset)
            }
            if index[name] != nil {
                throw CheckpointError(.corruptZip, "duplicate entry name", entry: name, fileOffset: start)
            }
            index[name] = entries.count
            entries.append(ZipEntry(name: name, method: method, flags: flags, crc32: crc,
                                    compressedSize: Int(compressed), uncompressedSize: Int(uncompressed),
                                    localHeaderOffset: local, dataOffset: dataOffset))
        }
        self.entries = entries
        self.index = index
    }

    func entry(named name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    /// Refuses, without reading its data, an entry this reader cannot produce: encrypted, an
    /// unknown compression method, a stored entry whose two sizes differ, a deflated entry whose
    /// declared size is over `maxTensorBytes` or impossible for its compressed size.
    func checkReadable(_ entry: ZipEntry) throws {
        if entry.flags & 0x1 != 0 {
            throw CheckpointError(.unsupportedZipFeature, "entry is encrypted", entry: entry.name, fileOffset: entry.localHeaderOffset)
        }
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw CheckpointError(.corruptZip, "stored entry has compressed size \(entry.compressedSize) != uncompressed size \(entry.uncompressedSize)",
                                      entry: entry.name, fileOffset: entry.localHeaderOffset)
            }
        case 8:
            guard entry.uncompressedSize <= limits.maxTensorBytes else {
                throw CheckpointError(.limitExceeded, "deflated entry declares \(entry.uncompressedSize) bytes, limit \(limits.maxTensorBytes)",
                                      entry: entry.name, fileOffset: entry.localHeaderOffset)
            }
            // Deflate cannot expand more than about 1032:1; a larger claim is a lie (or a bomb).
            guard entry.uncompressedSize <= entry.compressedSize &* 1032 &+ 1024 else {
                throw CheckpointError(.inflateFailed, "declared size \(entry.uncompressedSize) is impossible for \(entry.compressedSize) deflated bytes",
                                      entry: entry.name, fileOffset: entry.localHeaderOffset)
            }
        default:
            throw CheckpointError(.unsupportedZipFeature, "compression method \(entry.method) (only 0 stored and 8 deflate are read)",
                                  entry: entry.name, fileOffset: entry.localHeaderOffset)
        }
    }

    /// Where the entry's uncompressed bytes will come from, checked but not read: a view into the
    /// file for stored entries, the entry to inflate on first use for deflated ones.
    func storage(_ entry: ZipEntry, ledger: CopyLedger) throws -> StorageBytes {
        try checkReadable(entry)
        let origin: StorageBytes.Origin = entry.method == 0
            ? .view(block, entry.dataOffset..<(entry.dataOffset + entry.compressedSize))
            : .deflated(block, entry)
        return StorageBytes(entry: entry.name, origin: origin, ledger: ledger)
    }

    /// The entry's uncompressed bytes now: a view into the file for stored entries (no copy), a
    /// new inflated block for deflated ones, charged to `ledger`.
    func contents(of entry: ZipEntry, ledger: CopyLedger) throws -> (block: ByteBlock, range: Range<Int>) {
        let bytes = try storage(entry, ledger: ledger)
        let (block, start) = try ledger.withLock { try bytes.resolveLocked(for: nil) }
        return (block, start..<(start + bytes.count))
    }

    /// Inflates a deflated entry of `file` into a new block of exactly its declared size. Stops
    /// with `.inflateFailed` naming the entry as soon as the data would produce more than that
    /// (the output buffer is the declared size: nothing is ever written past it), and when it
    /// produces less, is corrupt, or fails its CRC-32. The caller charged the allocation.
    static func inflate(_ entry: ZipEntry, from file: ByteBlock) throws -> ByteBlock {
        let outSize = entry.uncompressedSize
        let output = UnsafeMutableRawPointer.allocate(byteCount: max(outSize, 1), alignment: 64)
        let block = ByteBlock(adopting: output, count: outSize)
        var stream = z_stream()
        var status = inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            throw CheckpointError(.inflateFailed, "zlib inflateInit2 failed (\(status))", entry: entry.name)
        }
        defer { inflateEnd(&stream) }
        let input = file.buffer.baseAddress! + entry.dataOffset
        var consumed = 0
        var produced = 0
        // zlib counts in UInt32: feed and drain in chunks so that huge entries work.
        let chunk = 1 << 30
        repeat {
            let inCount = min(chunk, entry.compressedSize - consumed)
            let outCount = min(chunk, outSize - produced)
            stream.next_in = UnsafeMutablePointer(mutating: (input + consumed).assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(inCount)
            stream.next_out = (output + produced).assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(outCount)
            status = CZlib.inflate(&stream, Z_NO_FLUSH)
            consumed += inCount - Int(stream.avail_in)
            produced += outCount - Int(stream.avail_out)
            if status == Z_STREAM_END { break }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                let reason = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw CheckpointError(.inflateFailed, "deflate data is corrupt: \(reason)",
                                      entry: entry.name, fileOffset: entry.dataOffset + consumed)
            }
            if status == Z_BUF_ERROR || (inCount == Int(stream.avail_in) && outCount == Int(stream.avail_out)) {
                // No progress possible: input exhausted or output full before the stream ended.
                let why = produced == outSize ? "inflates to more than the declared \(outSize) bytes"
                                              : "deflate data ends early (\(produced) of \(outSize) bytes)"
                throw CheckpointError(.inflateFailed, why, entry: entry.name, fileOffset: entry.dataOffset + consumed)
            }
        } while true
        guard produced == outSize else {
            throw CheckpointError(.inflateFailed, "inflated to \(produced) bytes, central directory says \(outSize)",
                                  entry: entry.name, fileOffset: entry.dataOffset + consumed)
        }
        var crc: UInt = crc32(0, nil, 0)
        var done = 0
        while done < outSize {
            let n = min(chunk, outSize - done)
            crc = crc32(crc, (output + done).assumingMemoryBound(to: Bytef.self), uInt(n))
            done += n
        }
        guard UInt32(truncatingIfNeeded: crc) == entry.crc32 else {
            throw CheckpointError(.inflateFailed, "CRC-32 mismatch after inflating", entry: entry.name)
        }
        return block
    }
}
