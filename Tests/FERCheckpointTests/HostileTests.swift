import FERCheckpoint
import Foundation
import XCTest

/// Hostile and broken inputs: each must end in a typed error naming the problem, never a crash,
/// a hang or silently zero-filled data.
final class HostileTests: XCTestCase {
    let six: [Float] = [1, 2, 3, 4, 5, 6]

    /// Wraps a pickle in a zip checkpoint with storage "0" holding six floats.
    func zipped(_ pickle: [UInt8], storages: [(String, [UInt8])]? = nil) -> [UInt8] {
        ZipBuilder.checkpoint(pickle: pickle, storages: storages ?? [("0", floatBytes(six))])
    }

    func load(_ pickle: [UInt8], limits: ImportLimits = .init()) throws -> Checkpoint {
        try Checkpoint.load(bytes: zipped(pickle), limits: limits)
    }

    // MARK: GLOBAL and REDUCE

    func testGlobalOsSystemIsRefusedAtItsOffset() throws {
        var p = PickleBuilder()
        p.global("os", "system")
        p.string("echo pwned")
        p.raw(0x85)
        p.reduce()
        p.stop()
        let error = assertCheckpointError(.disallowedGlobal, "os.system") { try load(p.bytes) }
        XCTAssertEqual(error?.offset, 2, "the GLOBAL opcode follows PROTO")
        XCTAssertEqual(error?.entry, "archive/data.pkl")
        XCTAssertEqual(error?.opcode, "GLOBAL (0x63)")
        XCTAssertTrue(error?.message.contains("os.system") ?? false, error?.description ?? "")

        for (module, name) in [("posix", "system"), ("subprocess", "Popen"), ("builtins", "eval"), ("__builtin__", "getattr"),
                               ("torch", "load"), ("torch.serialization", "load"), ("numpy", "load"), ("functools", "partial"),
                               ("os.path", "join"), ("fer_models", "__reduce__")] {
            var q = PickleBuilder(protocol: 4)
            // STACK_GLOBAL form
            q.raw(0x8c, UInt8(module.utf8.count)); q.bytes += Array(module.utf8)
            q.raw(0x8c, UInt8(name.utf8.count)); q.bytes += Array(name.utf8)
            q.raw(0x93)
            q.stop()
            let e = assertCheckpointError(.disallowedGlobal, "\(module).\(name)") { try load(q.bytes) }
            XCTAssertTrue(e?.message.contains("\(module).\(name)") ?? false, e?.description ?? "")
            XCTAssertEqual(e?.opcode, "STACK_GLOBAL (0x93)")
        }
    }

    func testReduceOnCallablesOutsideTheAllowListIsRefused() throws {
        for (module, name) in [("fer_models", "Net"), ("torch.nn.modules.conv", "Conv2d"), ("torch", "float32"),
                               ("torch", "FloatStorage"), ("torch.nn.parameter", "Parameter"), ("argparse", "Namespace")] {
            var p = PickleBuilder()
            p.global(module, name)
            p.emptyTuple()
            p.reduce()
            p.stop()
            let e = assertCheckpointError(.disallowedCall, "REDUCE \(module).\(name)") { try load(p.bytes) }
            XCTAssertTrue(e?.message.contains("\(module).\(name)") ?? false, e?.description ?? "")
            XCTAssertEqual(e?.offset, 2 + 1 + module.utf8.count + 1 + name.utf8.count + 1 + 1, "offset of REDUCE")
        }
        // NEWOBJ on an allowed callable / constant (not a class a checkpoint may rebuild).
        var p = PickleBuilder()
        p.global("collections", "OrderedDict"); p.emptyTuple(); p.raw(0x81); p.stop()
        assertCheckpointError(.disallowedCall, "NEWOBJ OrderedDict") { try load(p.bytes) }
        // BUILD on a list.
        var b = PickleBuilder()
        b.raw(0x5d); b.emptyDict(); b.build(); b.stop()
        assertCheckpointError(.disallowedCall, "BUILD on a list") { try load(b.bytes) }
        // copyreg._reconstructor with a base other than object.
        var r = PickleBuilder()
        r.global("copy_reg", "_reconstructor"); r.global("fer_models", "Net"); r.global("fer_models", "Base"); r.none(); r.raw(0x87); r.reduce(); r.stop()
        assertCheckpointError(.disallowedCall, "reconstructor base") { try load(r.bytes) }
    }

    func testClassNamesMayNotBeUsedAsData() throws {
        // As a dict value.
        var p = PickleBuilder()
        p.emptyDict(); p.string("x"); p.global("fer_models", "Net"); p.setItem(); p.stop()
        let e = assertCheckpointError(.disallowedGlobal, "class as dict value") { try load(p.bytes) }
        XCTAssertTrue(e?.message.contains("fer_models.Net") ?? false)
        // Inside a tuple appended to a list.
        var q = PickleBuilder()
        q.raw(0x5d); q.int(1); q.global("fer_models", "Net"); q.raw(0x86); q.raw(0x61); q.stop()
        assertCheckpointError(.disallowedGlobal, "class in a tuple in a list") { try load(q.bytes) }
        // As the pickled object itself.
        var r = PickleBuilder()
        r.global("fer_models", "Net"); r.stop()
        assertCheckpointError(.disallowedGlobal, "class as the result") { try load(r.bytes) }
        // As a REDUCE argument of an allowed callable.
        var s = PickleBuilder()
        s.global("builtins", "set"); s.raw(0x5d); s.global("fer_models", "Net"); s.raw(0x61); s.raw(0x85); s.reduce(); s.stop()
        assertCheckpointError(.disallowedGlobal, "class in a list") { try load(s.bytes) }
    }

    func testUnsupportedOpcodesAreNamed() throws {
        for (op, name) in [(UInt8(0x49), "INT (0x49)"), (0x50, "PERSID (0x50)"), (0x97, "NEXT_BUFFER (0x97)"),
                           (0x82, "EXT1 (0x82)"), (0x69, "INST (0x69)"), (0xff, "unknown (0xff)")] {
            var p = PickleBuilder()
            p.raw(op, 0x31, 0x0a)
            p.stop()
            let e = assertCheckpointError(.unsupportedOpcode, name) { try load(p.bytes) }
            XCTAssertEqual(e?.opcode, name)
            XCTAssertEqual(e?.offset, 2)
        }
        var p = PickleBuilder(protocol: 6)
        p.stop()
        assertCheckpointError(.corruptPickle, "protocol 6") { try load(p.bytes) }
        // Malformed operands: invalid UTF-8, stack underflow, a memo entry never stored, no STOP.
        var u = PickleBuilder()
        u.raw(0x58); u.bytes += le32(2) + [0xc3, 0x28]; u.stop()
        let ue = assertCheckpointError(.corruptPickle, "invalid UTF-8") { try load(u.bytes) }
        XCTAssertEqual(ue?.opcode, "BINUNICODE (0x58)")
        assertCheckpointError(.corruptPickle, "underflow") { try load([0x80, 0x02, 0x52, 0x2e]) }
        assertCheckpointError(.corruptPickle, "memo miss") { try load([0x80, 0x02, 0x68, 0x05, 0x2e]) }
        assertCheckpointError(.truncated, "no STOP") { try load([0x80, 0x02, 0x4e]) }
        assertCheckpointError(.corruptPickle, "APPENDS without MARK") { try load([0x80, 0x02, 0x5d, 0x4e, 0x65, 0x2e]) }
    }

    /// BININT is a signed 32-bit little-endian integer (pickle's `<i`): all ones is -1, and both ends of
    /// the range come back as Python reads them.
    func testBinIntIsSigned() throws {
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [6])
        for (key, bits) in [("minus_one", 0xFFFF_FFFF), ("min", 0x8000_0000), ("max", 0x7FFF_FFFF), ("256", 0x100)] as [(String, UInt32)] {
            p.string(key); p.raw(0x4a); p.bytes += le32(bits)
        }
        p.setItems()
        p.stop()
        let c = try load(p.bytes)
        XCTAssertEqual(c.metadata["minus_one"], "-1")
        XCTAssertEqual(c.metadata["min"], "-2147483648")
        XCTAssertEqual(c.metadata["max"], "2147483647")
        XCTAssertEqual(c.metadata["256"], "256")
    }

    // MARK: Resource bombs

    func testMemoBombCostsLinearTime() throws {
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [6])
        p.string("bomb")
        p.emptyTuple(); p.put(0); p.raw(0x30)
        for _ in 0..<80 {  // 2^80 paths through a DAG of 80 tuples
            p.get(0); p.get(0); p.raw(0x86); p.put(0); p.raw(0x30)
        }
        p.get(0)
        p.setItems()
        p.stop()
        let start = Date()
        let c = try load(p.bytes)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)
        XCTAssertEqual(try c["w"]!.floats(), six)
        let bomb = c.metadata["bomb"] ?? ""
        XCTAssertTrue(bomb.hasPrefix("(((((") && bomb.contains("…"), "[" + bomb + "]")
        XCTAssertLessThan(bomb.utf8.count, 1000)

        // The memo itself is bounded.
        var limits = ImportLimits()
        limits.maxMemoEntries = 100
        var m = PickleBuilder(protocol: 4)
        for _ in 0..<200 { m.none(); m.raw(0x94); m.raw(0x30) }
        m.none(); m.stop()
        let e = assertCheckpointError(.limitExceeded, "memo entries") { try load(m.bytes, limits: limits) }
        XCTAssertEqual(e?.opcode, "MEMOIZE (0x94)")
        XCTAssertEqual(e?.offset, 2 + 100 * 3 + 1)
    }

    func testDeepNestingNeitherCrashesNorHangs() throws {
        // A million nested 1-tuples: stored flat, released without recursion, rendered truncated.
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [6])
        p.string("deep"); p.none()
        p.bytes += [UInt8](repeating: 0x85, count: 1_000_000)
        p.setItems()
        p.stop()
        let c = try load(p.bytes)
        XCTAssertEqual(c.tensors.count, 1)
        XCTAssertTrue(c.metadata["deep"]!.contains("…"))

        // Open MARKs are bounded.
        var m = PickleBuilder()
        m.bytes += [UInt8](repeating: 0x28, count: 300)
        m.stop()
        assertCheckpointError(.limitExceeded, "MARK depth") { try load(m.bytes) }

        // A module that contains itself: the walk stops at the depth limit.
        var q = PickleBuilder()
        q.global("fer_models", "Net"); q.emptyTuple(); q.raw(0x81); q.put(0)
        q.emptyDict(); q.mark()
        q.string("_parameters"); q.orderedDict()
        q.string("_modules"); q.orderedDict(); q.string("again"); q.get(0); q.setItem()
        q.setItems(); q.build(); q.stop()
        let e = assertCheckpointError(.limitExceeded, "module cycle") { try load(q.bytes) }
        XCTAssertTrue(e?.key?.hasPrefix("again.again.") ?? false)

        // The element budget bounds containers built from one memo entry.
        var limits = ImportLimits()
        limits.maxElements = 1000
        var l = PickleBuilder()
        l.raw(0x5d); l.put(0)
        for _ in 0..<2000 { l.get(0); l.none(); l.raw(0x61); l.raw(0x30) }
        l.stop()
        assertCheckpointError(.limitExceeded, "element count") { try load(l.bytes, limits: limits) }
    }

    func testHugeDeclaredSizes() throws {
        // A string claiming 4 GiB.
        var s = PickleBuilder()
        s.raw(0x58); s.bytes += le32(0xFFFF_FFF0); s.stop()
        let e = assertCheckpointError(.limitExceeded, "BINUNICODE length") { try load(s.bytes) }
        XCTAssertEqual(e?.offset, 2)
        // BINBYTES8 claiming 2^62 bytes; LONG4 claiming a billion bytes.
        var b = PickleBuilder(protocol: 4)
        b.raw(0x8e); b.bytes += le64(1 << 62); b.stop()
        assertCheckpointError(.limitExceeded, "BINBYTES8 length") { try load(b.bytes) }
        var ba = PickleBuilder(protocol: 5)
        ba.raw(0x96); ba.bytes += le64(1 << 62); ba.stop()
        let bae = assertCheckpointError(.limitExceeded, "BYTEARRAY8 length") { try load(ba.bytes) }
        XCTAssertEqual(bae?.opcode, "BYTEARRAY8 (0x96)")
        XCTAssertTrue(bae?.message.hasPrefix("BYTEARRAY8 data of") ?? false, bae?.message ?? "")
        var l = PickleBuilder()
        l.raw(0x8b); l.bytes += le32(1 << 30); l.stop()
        assertCheckpointError(.limitExceeded, "LONG4 width") { try load(l.bytes) }
        // A FRAME longer than the stream.
        var f = PickleBuilder(protocol: 4)
        f.raw(0x95); f.bytes += le64(1 << 40); f.stop()
        assertCheckpointError(.truncated, "FRAME length") { try load(f.bytes) }
        // A tensor whose element count overflows.
        var t = PickleBuilder()
        t.beginStateDict(); t.string("w"); t.tensor(key: "0", numel: 6, size: [1 << 30, 1 << 30, 1 << 30], stride: [0, 0, 1]); t.setItems(); t.stop()
        assertCheckpointError(.limitExceeded, "tensor size overflow") { try load(t.bytes) }
        // A tensor larger than maxTensorBytes.
        var limits = ImportLimits()
        limits.maxTensorBytes = 16
        var big = PickleBuilder()
        big.beginStateDict(); big.string("w"); big.tensor(key: "0", numel: 6, size: [6]); big.setItems(); big.stop()
        let te = assertCheckpointError(.limitExceeded, "maxTensorBytes") { try load(big.bytes, limits: limits) }
        XCTAssertEqual(te?.key, "w")
        // Rank beyond the limit.
        var r = PickleBuilder()
        r.beginStateDict(); r.string("w"); r.tensor(key: "0", numel: 6, size: [Int](repeating: 1, count: 40)); r.setItems(); r.stop()
        assertCheckpointError(.limitExceeded, "rank") { try load(r.bytes) }
        // A zip whose end record declares 65535 entries in a tiny directory.
        var z = zipped(PickleBuilder().bytes + [0x4e, 0x2e])
        z[z.count - 12] = 0xff; z[z.count - 11] = 0xff
        assertCheckpointError(.corruptZip, "entry count") { try Checkpoint.load(bytes: z) }
        // A deflated entry that claims to inflate to a gigabyte.
        var opts = ZipBuilder.Options(); opts.deflate = true
        let small = ZipBuilder.make([("a/data.pkl", [0x80, 0x02, 0x4e, 0x2e])], opts)
        var lie = small
        // central directory uncompressed size field: 24 bytes into the central header
        let central = Int(small.count - 22 - (46 + 10))
        lie.replaceSubrange((central + 24)..<(central + 28), with: le32(1 << 30))
        assertCheckpointError(.inflateFailed, "impossible inflate size") { try Checkpoint.load(bytes: lie) }
        // A legacy storage claiming 2^60 elements.
        var o = PickleBuilder()
        o.beginStateDict(); o.string("w"); o.tensor(key: "k", numel: 6, size: [6]); o.setItems(); o.stop()
        var legacy = legacyFile(object: o.bytes, storages: [("k", 4, floatBytes(six))])
        legacy.replaceSubrange((legacy.count - 32)..<(legacy.count - 24), with: le64(1 << 60))
        assertCheckpointError(.limitExceeded, "legacy storage count") { try Checkpoint.load(bytes: legacy) }
    }

    func testStorageShorterThanItsTensor() throws {
        // The storage entry holds 8 bytes, the persistent id claims 6 floats.
        var p = PickleBuilder()
        p.beginStateDict(); p.string("w"); p.tensor(key: "0", numel: 6, size: [6]); p.setItems(); p.stop()
        let e = assertCheckpointError(.storageOutOfBounds, "short storage entry") {
            try Checkpoint.load(bytes: zipped(p.bytes, storages: [("0", floatBytes([1, 2]))]))
        }
        XCTAssertEqual(e?.key, "w")
        XCTAssertEqual(e?.entry, "archive/data/0")
        // Declared size honest (2 floats), tensor wants 4.
        var q = PickleBuilder()
        q.beginStateDict(); q.string("w"); q.tensor(key: "0", numel: 2, size: [4]); q.setItems(); q.stop()
        assertCheckpointError(.storageOutOfBounds, "tensor larger than storage") {
            try Checkpoint.load(bytes: zipped(q.bytes, storages: [("0", floatBytes([1, 2]))]))
        }
        // Strides reaching past the end: (2, 3) with stride (4, 1) needs 7 elements of 6.
        var r = PickleBuilder()
        r.beginStateDict(); r.string("w"); r.tensor(key: "0", numel: 6, size: [2, 3], stride: [4, 1]); r.setItems(); r.stop()
        assertCheckpointError(.storageOutOfBounds, "strided extent") { try load(r.bytes) }
        // Offset past the end.
        var s = PickleBuilder()
        s.beginStateDict(); s.string("w"); s.tensor(key: "0", numel: 6, offset: 6, size: [1]); s.setItems(); s.stop()
        assertCheckpointError(.storageOutOfBounds, "offset") { try load(s.bytes) }
        // A storage type whose dtype the importer does not hold (complex64).
        var x = PickleBuilder()
        x.beginStateDict(); x.string("z"); x.tensor("ComplexFloatStorage", key: "0", numel: 3, size: [3]); x.setItems(); x.stop()
        let xe = assertCheckpointError(.invalidTensor, "complex storage") { try load(x.bytes) }
        XCTAssertTrue(xe?.message.contains("torch.ComplexFloatStorage") ?? false)
        // No entry at all for the storage.
        var t = PickleBuilder()
        t.beginStateDict(); t.string("w"); t.tensor(key: "7", numel: 6, size: [6]); t.setItems(); t.stop()
        let m = assertCheckpointError(.missingEntry, "missing storage") { try load(t.bytes) }
        XCTAssertEqual(m?.entry, "archive/data/7")
        // Legacy data section shorter than its count.
        var o = PickleBuilder()
        o.beginStateDict(); o.string("w"); o.tensor(key: "k", numel: 6, size: [6]); o.setItems(); o.stop()
        let legacy = legacyFile(object: o.bytes, storages: [("k", 4, floatBytes(six))])
        assertCheckpointError(.truncated, "legacy data cut") { try Checkpoint.load(bytes: Array(legacy.dropLast(4))) }
    }

    // MARK: Files that are not checkpoints

    func testTorchScriptArchiveAndLFSPointerAndOtherFormats() throws {
        let ts = ZipBuilder.make([("net/data.pkl", [0x80, 0x02, 0x4e, 0x2e]), ("net/constants.pkl", [0x80, 0x02, 0x29, 0x2e]),
                                  ("net/code/__torch__/net.py", Array("def forward(self): ...".utf8)), ("net/version", [0x33])])
        let e = assertCheckpointError(.torchScriptArchive, "TorchScript") { try Checkpoint.load(bytes: ts) }
        XCTAssertTrue(e?.message.contains("TorchScript") ?? false)
        let lfs = Array("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 21982469\n".utf8)
        let l = assertCheckpointError(.gitLFSPointer, "LFS") { try Checkpoint.load(bytes: lfs) }
        XCTAssertTrue(l?.message.contains("git lfs pull") ?? false)
        assertCheckpointError(.unrecognizedFormat, "empty") { try Checkpoint.load(bytes: []) }
        let text = assertCheckpointError(.unrecognizedFormat, "text") { try Checkpoint.load(bytes: Array("hello\nworld".utf8)) }
        XCTAssertTrue(text?.message.contains("starts with 68 65 6c 6c 6f 0a 77 6f") ?? false, text?.message ?? "")
        assertCheckpointError(.missingEntry, "zip without data.pkl") {
            try Checkpoint.load(bytes: ZipBuilder.make([("x/readme.txt", [1, 2, 3])]))
        }
        assertCheckpointError(.unrecognizedStructure, "no tensors") {
            var p = PickleBuilder(); p.emptyDict(); p.string("iter"); p.int(3); p.setItem(); p.stop()
            return try load(p.bytes)
        }
        // A bare pickle without the legacy magic number.
        assertCheckpointError(.corruptLegacyHeader, "bare pickle") { try Checkpoint.load(bytes: [0x80, 0x02, 0x4e, 0x2e]) }
        // safetensors: offsets past the data, overlapping ranges, absurd header length.
        func st(_ json: String, data: Int) -> [UInt8] {
            var h = Array(json.utf8)
            while h.count % 8 != 0 { h.append(0x20) }
            return le64(UInt64(h.count)) + h + [UInt8](repeating: 0, count: data)
        }
        assertCheckpointError(.storageOutOfBounds, "safetensors offsets") {
            try Checkpoint.load(bytes: st(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: 8))
        }
        let overlap = assertCheckpointError(.corruptSafetensors, "safetensors overlap") {
            try Checkpoint.load(bytes: st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12))
        }
        XCTAssertEqual(overlap?.key, "b")
        XCTAssertEqual(overlap?.message, "tensor data overlaps that of 'a'")
        // A repeated name is a duplicate key, named, at the offset of its second occurrence.
        let twice = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let duplicate = assertCheckpointError(.corruptSafetensors, "safetensors duplicate key") {
            try Checkpoint.load(bytes: st(twice, data: 8))
        }
        XCTAssertEqual(duplicate?.key, "a")
        XCTAssertEqual(duplicate?.message, "header JSON: duplicate key 'a'")
        XCTAssertEqual(duplicate?.offset, 8 + twice.utf8.count - #""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8.count)
        // Also inside a tensor's own object.
        let field = assertCheckpointError(.corruptSafetensors, "safetensors duplicate field") {
            try Checkpoint.load(bytes: st(#"{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}"#, data: 8))
        }
        XCTAssertEqual(field?.key, "dtype")
        assertCheckpointError(.corruptSafetensors, "safetensors shape mismatch") {
            try Checkpoint.load(bytes: st(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8))
        }
        assertCheckpointError(.corruptSafetensors, "safetensors bad json") {
            try Checkpoint.load(bytes: st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, data: 8))
        }
    }

    func testErrorDescriptionNamesFileKeyOpcodeAndOffset() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let path = dir + "/hostile-\(getpid()).pth"
        var p = PickleBuilder()
        p.global("os", "system"); p.stop()
        try Data(zipped(p.bytes)).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try Checkpoint.load(path: path)
            XCTFail("loaded")
        } catch let error as CheckpointError {
            XCTAssertEqual(error.file, path)
            let text = error.description
            // data.pkl is the first entry: local header (30) + name (16) + padding to 64.
            XCTAssertEqual(error.fileOffset, 64 + 2)
            for part in ["disallowedGlobal", "os.system", "opcode GLOBAL (0x63)", "byte 2 of archive/data.pkl", "file byte 66", path] {
                XCTAssertTrue(text.contains(part), "\(part) missing from: \(text)")
            }
        }
        let missing = assertCheckpointError(.io, "missing file") { try Checkpoint.load(path: dir + "/no-such-\(getpid()).pth") }
        XCTAssertNotNil(missing?.file)
    }

    // MARK: Damaged real checkpoints

    func testReferenceCheckpointCutAtManyOffsets() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Repo.reference())))
        var offsets = stride(from: 1, to: bytes.count, by: bytes.count / 60).map { $0 }
        offsets += (1...40).map { bytes.count - $0 * 7 }  // the central directory and end records
        for cut in offsets {
            do {
                _ = try Checkpoint.load(bytes: Array(bytes[0..<cut]))
                XCTFail("cut at \(cut) loaded")
            } catch let error as CheckpointError {
                XCTAssertTrue([.corruptZip, .truncated, .unrecognizedFormat].contains(error.kind), "cut at \(cut): \(error)")
            }
        }
        // The legacy form, cut inside its pickles and its data.
        let legacyPath = try Repo.require("Tests/Fixtures/checkpoints/lfnsb7-legacy/model.pth", hint: "fixture generator")
        let legacy = [UInt8](try Data(contentsOf: URL(fileURLWithPath: legacyPath)))
        var legacyCuts = Array(stride(from: 16, to: 60_000, by: 1499)) + stride(from: 60_000, to: legacy.count, by: legacy.count / 25).map { $0 }
        legacyCuts.append(legacy.count - 1)
        for cut in legacyCuts {
            do {
                _ = try Checkpoint.load(bytes: Array(legacy[0..<cut]))
                XCTFail("legacy cut at \(cut) loaded")
            } catch let error as CheckpointError {
                XCTAssertEqual(error.kind, .truncated, "legacy cut at \(cut): \(error)")
            }
        }
    }

    func testFlippedBytesNeverCrash() throws {
        // Every byte of a small hand-made checkpoint (zip and legacy) flipped in turn.
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [2, 3])
        p.string("t"); p.tensor(key: "0", numel: 6, size: [3, 2], stride: [1, 3])
        p.setItems()
        p.stop()
        let inputs = [zipped(p.bytes), legacyFile(object: p.bytes, storages: [("0", 4, floatBytes(six))])]
        var failures = 0, successes = 0
        for input in inputs {
            for i in 0..<input.count {
                var damaged = input
                damaged[i] ^= 0xff
                do {
                    let c = try Checkpoint.load(bytes: damaged)
                    for t in c.tensors { _ = try t.bytes() }
                    successes += 1
                } catch is CheckpointError {
                    failures += 1
                }
            }
        }
        XCTAssertGreaterThan(failures, 100)
        XCTAssertGreaterThan(successes, 10, "flips in data bytes and padding still load")
        // The authors'-format fixture with flips across its pickle.
        let path = try Repo.require("Tests/Fixtures/checkpoints/lfnsb7-model-key/model.pth", hint: "fixture generator")
        let real = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for i in stride(from: 0, to: min(real.count, 40_000), by: 37) {
            var damaged = real
            damaged[i] ^= UInt8(truncatingIfNeeded: i | 1)
            do {
                let c = try Checkpoint.load(bytes: damaged)
                for t in c.tensors { _ = try t.withUnsafeRawBytes { $0.first } }
            } catch is CheckpointError {}
        }
    }
}
