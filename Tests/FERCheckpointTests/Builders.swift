import CZlib
import FERCheckpoint
import Foundation

/// Hand-assembles pickle streams opcode by opcode (the tests build every input themselves).
struct PickleBuilder {
    var bytes: [UInt8]

    init(protocol version: UInt8 = 2) { bytes = [0x80, version] }

    mutating func raw(_ b: UInt8...) { bytes += b }
    mutating func mark() { raw(0x28) }
    mutating func tuple() { raw(0x74) }
    mutating func reduce() { raw(0x52) }
    mutating func build() { raw(0x62) }
    mutating func none() { raw(0x4e) }
    mutating func stop() { raw(0x2e) }
    mutating func emptyDict() { raw(0x7d) }
    mutating func setItems() { raw(0x75) }
    mutating func setItem() { raw(0x73) }
    mutating func newFalse() { raw(0x89) }
    mutating func newTrue() { raw(0x88) }
    mutating func emptyTuple() { raw(0x29) }
    mutating func put(_ i: UInt8) { raw(0x71, i) }
    mutating func get(_ i: UInt8) { raw(0x68, i) }

    mutating func global(_ module: String, _ name: String) {
        raw(0x63)
        bytes += Array(module.utf8) + [0x0a] + Array(name.utf8) + [0x0a]
    }

    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        raw(0x58)
        bytes += le32(UInt32(u.count)) + u
    }

    mutating func int(_ i: Int) {
        if i >= 0 && i < 256 { raw(0x4b, UInt8(i)) } else { raw(0x4a); bytes += le32(UInt32(bitPattern: Int32(i))) }
    }

    mutating func float(_ d: Double) {
        raw(0x47)
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: d.bitPattern >> (56 - 8 * UInt64($0))) }
    }

    mutating func intTuple(_ xs: [Int]) {
        mark()
        for x in xs { int(x) }
        tuple()
    }

    /// An empty `collections.OrderedDict()` via REDUCE.
    mutating func orderedDict() {
        global("collections", "OrderedDict")
        emptyTuple()
        reduce()
    }

    /// The persistent id of a storage: ('storage', torch.<type>, key, location, numel).
    mutating func storage(_ type: String, key: String, location: String = "cpu", numel: Int, module: String = "torch") {
        mark()
        string("storage")
        global(module, type)
        string(key)
        string(location)
        int(numel)
        tuple()
        raw(0x51)  // BINPERSID
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    mutating func tensor(_ type: String = "FloatStorage", key: String, numel: Int, offset: Int = 0,
                         size: [Int], stride: [Int]? = nil, location: String = "cpu") {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        storage(type, key: key, location: location, numel: numel)
        int(offset)
        intTuple(size)
        intTuple(stride ?? PickleBuilder.rowMajor(size))
        newFalse()
        orderedDict()
        tuple()
        reduce()
    }

    static func rowMajor(_ size: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: size.count)
        var s = 1
        for i in stride(from: size.count - 1, through: 0, by: -1) { strides[i] = s; s *= size[i] }
        return strides
    }

    /// Starts a bare state dict (OrderedDict) and opens a MARK for SETITEMS.
    mutating func beginStateDict() {
        orderedDict()
        mark()
    }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func floatBytes(_ xs: [Float], bigEndian: Bool = false) -> [UInt8] {
    xs.flatMap { bigEndian ? le32($0.bitPattern).reversed() : le32($0.bitPattern) }
}

/// Raw deflate (no zlib header), as zip method 8 stores it.
func rawDeflate(_ input: [UInt8]) -> [UInt8] {
    var stream = z_stream()
    precondition(deflateInit2_(&stream, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                               Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 16)
    var source = input
    let produced = source.withUnsafeMutableBufferPointer { src -> Int in
        output.withUnsafeMutableBufferPointer { dst -> Int in
            stream.next_in = src.baseAddress
            stream.avail_in = uInt(src.count)
            stream.next_out = dst.baseAddress
            stream.avail_out = uInt(dst.count)
            precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END)
            return dst.count - Int(stream.avail_out)
        }
    }
    return Array(output[0..<produced])
}

/// Raw deflate of `mebibytes` MiB of zeros, about 1 KB per MiB, made without holding the zeros:
/// one MiB deflated with a full flush (which ends byte-aligned and forgets the history, so the
/// next MiB compresses to the same bytes) repeated, then an empty final block. The CRC-32 of the
/// zeros is combined from the CRC of one MiB.
func deflatedZeros(mebibytes: Int) -> (stored: [UInt8], crc: UInt32) {
    let mib = [UInt8](repeating: 0, count: 1 << 20)
    var stream = z_stream()
    precondition(deflateInit2_(&stream, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                               Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&stream) }
    var chunk = [UInt8](repeating: 0, count: 8192)
    var source = mib
    let n = source.withUnsafeMutableBufferPointer { src -> Int in
        chunk.withUnsafeMutableBufferPointer { dst -> Int in
            stream.next_in = src.baseAddress
            stream.avail_in = uInt(src.count)
            stream.next_out = dst.baseAddress
            stream.avail_out = uInt(dst.count)
            precondition(deflate(&stream, Z_FULL_FLUSH) == Z_OK && stream.avail_in == 0 && stream.avail_out > 0)
            return dst.count - Int(stream.avail_out)
        }
    }
    var stored: [UInt8] = []
    stored.reserveCapacity(n * mebibytes + 2)
    for _ in 0..<mebibytes { stored += chunk[0..<n] }
    stored += [0x03, 0x00]  // final fixed-Huffman block with no data
    let one = crc32(0, mib, uInt(mib.count))
    var crc: uLong = crc32(0, nil, 0)
    for _ in 0..<mebibytes { crc = crc32_combine(crc, one, numericCast(mib.count)) }
    return (stored, UInt32(truncatingIfNeeded: crc))
}

/// Writes zip archives the way torch.save lays them out (and some ways it does not).
struct ZipBuilder {
    struct Options {
        var deflate = false
        var zip64 = false
        /// Pads each local header's extra field so that data starts on this boundary (PyTorch: 64).
        var alignment = 64
    }

    /// One member as written: its name, method (0 stored, 8 deflate), CRC-32 and uncompressed
    /// size as the headers declare them, and the bytes stored.
    struct Member {
        var name: String
        var method: UInt16
        var crc: UInt32
        var size: Int
        var stored: [UInt8]

        /// `data` stored, or deflated when `deflate`, with its true CRC and size.
        init(_ name: String, _ data: [UInt8], deflate: Bool) {
            self.init(name: name, method: deflate ? 8 : 0, crc: crc32Of(data), size: data.count,
                      stored: deflate ? rawDeflate(data) : data)
        }

        init(name: String, method: UInt16, crc: UInt32, size: Int, stored: [UInt8]) {
            self.name = name
            self.method = method
            self.crc = crc
            self.size = size
            self.stored = stored
        }
    }

    static func make(_ entries: [(String, [UInt8])], _ options: Options = Options()) -> [UInt8] {
        make(members: entries.map { Member($0.0, $0.1, deflate: options.deflate) }, options)
    }

    static func make(members: [Member], _ options: Options = Options()) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for member in members {
            let nameBytes = Array(member.name.utf8)
            let crc = member.crc
            let stored = member.stored
            let method = member.method
            let offset = out.count
            // Local header: sizes in a zip64 extra when asked, then "FB" padding to the alignment.
            var localExtra: [UInt8] = []
            if options.zip64 {
                localExtra += le16(1) + le16(16) + le64(UInt64(member.size)) + le64(UInt64(stored.count))
            }
            let unpadded = offset + 30 + nameBytes.count + localExtra.count + 4
            let pad = options.alignment > 1 ? (options.alignment - unpadded % options.alignment) % options.alignment : 0
            if options.alignment > 1 { localExtra += le16(0x4246) + le16(UInt16(pad)) + [UInt8](repeating: 0x5a, count: pad) }
            out += le32(0x0403_4b50) + le16(options.zip64 ? 45 : 20) + le16(0) + le16(method) + le16(0) + le16(0)
            out += le32(crc)
            out += options.zip64 ? le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) : le32(UInt32(stored.count)) + le32(UInt32(member.size))
            out += le16(UInt16(nameBytes.count)) + le16(UInt16(localExtra.count)) + nameBytes + localExtra
            out += stored
            // Central directory record: zip64 extra with sizes and offset when asked.
            let centralExtra = options.zip64 ? le16(1) + le16(24) + le64(UInt64(member.size)) + le64(UInt64(stored.count)) + le64(UInt64(offset)) : []
            central += le32(0x0201_4b50) + le16(options.zip64 ? 45 : 20) + le16(options.zip64 ? 45 : 20) + le16(0) + le16(method)
            central += le16(0) + le16(0) + le32(crc)
            central += options.zip64 ? le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) : le32(UInt32(stored.count)) + le32(UInt32(member.size))
            central += le16(UInt16(nameBytes.count)) + le16(UInt16(centralExtra.count)) + le16(0) + le16(0) + le16(0) + le32(0)
            central += options.zip64 ? le32(0xFFFF_FFFF) : le32(UInt32(offset))
            central += nameBytes + centralExtra
        }
        let centralOffset = out.count
        out += central
        if options.zip64 {
            let recordOffset = out.count
            out += le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            out += le64(UInt64(members.count)) + le64(UInt64(members.count)) + le64(UInt64(central.count)) + le64(UInt64(centralOffset))
            out += le32(0x0706_4b50) + le32(0) + le64(UInt64(recordOffset)) + le32(1)
            out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
        } else {
            out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(UInt16(members.count)) + le16(UInt16(members.count))
            out += le32(UInt32(central.count)) + le32(UInt32(centralOffset)) + le16(0)
        }
        return out
    }

    /// A torch.save-style checkpoint: `<folder>/data.pkl`, `<folder>/byteorder`, `<folder>/data/<key>`.
    /// `prepared` members (already compressed, or declaring sizes of their own) follow the rest.
    static func checkpoint(pickle: [UInt8], storages: [(String, [UInt8])], folder: String = "archive",
                           byteorder: String? = "little", extra: [(String, [UInt8])] = [],
                           prepared: [Member] = [], options: Options = Options()) -> [UInt8] {
        var entries: [(String, [UInt8])] = [("\(folder)/data.pkl", pickle)]
        if let byteorder { entries.append(("\(folder)/byteorder", Array(byteorder.utf8))) }
        for (key, data) in storages { entries.append(("\(folder)/data/\(key)", data)) }
        entries.append(("\(folder)/version", Array("3\n".utf8)))
        entries += extra
        return make(members: entries.map { Member($0.0, $0.1, deflate: options.deflate) } + prepared, options)
    }
}

/// A legacy (pre-1.6) torch.save file: magic, 1001, sys_info, the object, the keys, the data.
func legacyFile(object: [UInt8], storages: [(key: String, elementSize: Int, data: [UInt8])], protocol version: UInt8 = 2) -> [UInt8] {
    var out: [UInt8] = [0x80, version, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]
    out += [0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]  // 1001
    var info = PickleBuilder()
    info.emptyDict()
    info.mark()
    info.string("protocol_version"); info.int(1001)
    info.string("little_endian"); info.newTrue()
    info.setItems()
    info.stop()
    out += info.bytes + object
    var keys = PickleBuilder()
    keys.raw(0x5d)  // EMPTY_LIST
    keys.mark()
    for s in storages { keys.string(s.key) }
    keys.raw(0x65)  // APPENDS
    keys.stop()
    out += keys.bytes
    for s in storages {
        out += le64(UInt64(s.data.count / s.elementSize)) + s.data
    }
    return out
}
