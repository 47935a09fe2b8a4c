import FERCheckpoint
import Foundation
import XCTest

/// Container and pickle features, on inputs assembled byte by byte here.
final class FormatTests: XCTestCase {
    let six: [Float] = [1, 2, 3, 4, 5, 6]

    /// OrderedDict {'w': 2x3 float32, 'wt': its transpose (a strided view of the same storage),
    /// 'tail': a 2-element view at offset 4, 'n': an int64 scalar}.
    func sharedStoragePickle() -> [UInt8] {
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [2, 3])
        p.string("wt"); p.tensor(key: "0", numel: 6, size: [3, 2], stride: [1, 3])
        p.string("tail"); p.tensor(key: "0", numel: 6, offset: 4, size: [2])
        p.string("n"); p.tensor("LongStorage", key: "1", numel: 1, size: [])
        p.setItems()
        p.stop()
        return p.bytes
    }

    func checkShared(_ c: Checkpoint, _ label: String) throws {
        XCTAssertEqual(c.tensors.map(\.name), ["w", "wt", "tail", "n"], label)
        XCTAssertEqual(try c["w"]!.floats(), six, label)
        XCTAssertEqual(c["wt"]!.shape, [3, 2], label)
        XCTAssertEqual(try c["wt"]!.floats(), [1, 4, 2, 5, 3, 6], "\(label): transposed view materialised exactly")
        XCTAssertEqual(try c["tail"]!.floats(), [5, 6], "\(label): storage offset")
        XCTAssertEqual(c["n"]!.shape, [], label)
        XCTAssertEqual(c["n"]!.count, 1, label)
        XCTAssertEqual(try c["n"]!.int64s(), [40], label)
        XCTAssertEqual(c.structure, "bare state_dict", label)
    }

    func testStoredDeflatedZip64AndAnyFolderNameGiveTheSameTensors() throws {
        let storages = [("0", floatBytes(six)), ("1", le64(40))]
        var variants: [(String, [UInt8])] = []
        variants.append(("stored", ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages)))
        var deflate = ZipBuilder.Options(); deflate.deflate = true
        variants.append(("deflated", ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages, options: deflate)))
        var zip64 = ZipBuilder.Options(); zip64.zip64 = true
        variants.append(("zip64", ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages, options: zip64)))
        var unaligned = ZipBuilder.Options(); unaligned.alignment = 1
        variants.append(("odd folder, unaligned", ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages,
                                                                       folder: "my model.v2", byteorder: nil, options: unaligned)))
        for (label, bytes) in variants {
            let c = try Checkpoint.load(bytes: bytes)
            XCTAssertEqual(c.container, .zip, label)
            try checkShared(c, label)
        }
    }

    func testBigEndianByteorderIsSwapped() throws {
        let storages = [("0", floatBytes(six, bigEndian: true)), ("1", le64(40).reversed())]
        let c = try Checkpoint.load(bytes: ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages, byteorder: "big"))
        try checkShared(c, "big-endian")
    }

    func testContiguousTensorsAreNotCopied() throws {
        let storages = [("0", floatBytes(six)), ("1", le64(40))]
        let c = try Checkpoint.load(bytes: ZipBuilder.checkpoint(pickle: sharedStoragePickle(), storages: storages))
        XCTAssertTrue(c["w"]!.isZeroCopy)
        XCTAssertTrue(c["tail"]!.isZeroCopy)
        XCTAssertFalse(c["wt"]!.isZeroCopy)
        // Both views share the storage's bytes: same address for element 4.
        let a = try c["w"]!.withUnsafeRawBytes { $0.baseAddress! + 16 }
        let b = try c["tail"]!.withUnsafeRawBytes { $0.baseAddress! }
        XCTAssertEqual(a, b)
    }

    func testLegacyFormatWithCudaLocationsAndProtocol2() throws {
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("module.conv.weight"); p.tensor(key: "94011", numel: 6, size: [2, 3], location: "cuda:0")
        p.string("module.conv.weight_t"); p.tensor(key: "94011", numel: 6, size: [3, 2], stride: [1, 3], location: "cuda:0")
        p.string("module.bn.num_batches_tracked"); p.tensor("LongStorage", key: "94012", numel: 1, size: [])
        p.setItems()
        p.stop()
        for version: UInt8 in [2, 4] {
        let file = legacyFile(object: p.bytes, storages: [("94011", 4, floatBytes(six)), ("94012", 8, le64(7))], protocol: version)
        let c = try Checkpoint.load(bytes: file)
        XCTAssertEqual(c.container, .legacy)
        XCTAssertEqual(c.tensors.map(\.name), ["conv.weight", "conv.weight_t", "bn.num_batches_tracked"])
        XCTAssertTrue(c.structure.contains("'module.' prefix removed"), c.structure)
        XCTAssertEqual(try c["conv.weight"]!.floats(), six)
        XCTAssertEqual(try c["conv.weight_t"]!.floats(), [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(try c["bn.num_batches_tracked"]!.int64s(), [7])
        }
        // A different first pickle is not a legacy checkpoint.
        var wrong = legacyFile(object: p.bytes, storages: [("94011", 4, floatBytes(six)), ("94012", 8, le64(7))])
        wrong[5] ^= 1
        assertCheckpointError(.corruptLegacyHeader, "wrong magic") { try Checkpoint.load(bytes: wrong) }
    }

    func testLegacyWholeModuleClassByPersistentIdAndStorageViews() throws {
        // Legacy whole-module saves name module classes by ('module', cls, file, source) persistent
        // ids; very old files slice storages by 6-tuple ids with (view_key, offset, size).
        var p = PickleBuilder()
        p.mark(); p.string("module"); p.global("__main__", "Net"); p.string("net.py"); p.string("class Net: ..."); p.tuple(); p.raw(0x51)
        p.emptyTuple(); p.raw(0x81)
        p.emptyDict(); p.mark()
        p.string("_parameters"); p.orderedDict(); p.mark()
        p.string("weight")
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.mark()
        p.mark(); p.string("storage"); p.global("torch", "FloatStorage"); p.string("root"); p.string("cuda:0"); p.int(6)
        p.mark(); p.string("view1"); p.int(2); p.int(4); p.tuple()  // elements 2..<6 of 'root'
        p.tuple(); p.raw(0x51)
        p.int(1); p.intTuple([3]); p.intTuple([1]); p.newFalse(); p.orderedDict(); p.tuple(); p.reduce()
        p.setItems()
        p.string("_buffers"); p.orderedDict()
        p.string("_modules"); p.orderedDict()
        p.setItems(); p.build(); p.stop()
        let c = try Checkpoint.load(bytes: legacyFile(object: p.bytes, storages: [("root", 4, floatBytes(six))]))
        XCTAssertEqual(c.structure, "whole pickled module (__main__.Net)")
        XCTAssertEqual(c.tensors.map(\.name), ["weight"])
        XCTAssertEqual(try c["weight"]!.floats(), [4, 5, 6], "view offset 2 plus tensor offset 1")
    }

    func testProtocol4And5OpcodesAndV3Rebuild() throws {
        // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINGET, EMPTY_SET/ADDITEMS, FROZENSET,
        // BINBYTES8, BYTEARRAY8, LONG1, _rebuild_tensor_v3 over an UntypedStorage (numel in bytes),
        // _rebuild_parameter, _rebuild_parameter_with_state, _rebuild_from_type_v2.
        var p = PickleBuilder(protocol: 5)
        func short(_ s: String) { p.raw(0x8c, UInt8(s.utf8.count)); p.bytes += Array(s.utf8); p.raw(0x94) }
        func stackGlobal(_ m: String, _ n: String) { short(m); short(n); p.raw(0x93, 0x94) }
        p.raw(0x95); p.bytes += le64(4)  // a frame (transparent)
        p.raw(0x7d, 0x94)  // EMPTY_DICT, MEMOIZE (memo 0)
        p.mark()
        // 'p': Parameter(_rebuild_tensor_v3(UntypedStorage 'u' (24 bytes), 0, (2, 3), (3, 1), False, {}, torch.float32))
        short("p")
        stackGlobal("torch._utils", "_rebuild_parameter")
        p.mark()
        stackGlobal("torch._utils", "_rebuild_tensor_v3")
        p.mark()
        p.mark(); short("storage"); stackGlobal("torch.storage", "UntypedStorage"); short("u"); short("cpu"); p.int(24); p.tuple(); p.raw(0x51)
        p.int(0); p.intTuple([2, 3]); p.intTuple([3, 1]); p.newFalse(); p.emptyDict(); stackGlobal("torch", "float32")
        p.tuple(); p.reduce()
        p.newTrue(); p.emptyDict()
        p.tuple(); p.reduce()
        // 'q': _rebuild_from_type_v2(_rebuild_tensor_v2, torch.nn.parameter.Parameter, (storage 'h' f16, 1, (2,), (1,), ...), {})
        short("q")
        stackGlobal("torch._tensor", "_rebuild_from_type_v2")
        p.mark()
        stackGlobal("torch._utils", "_rebuild_tensor_v2")
        stackGlobal("torch.nn.parameter", "Parameter")
        p.mark()
        p.mark(); short("storage"); stackGlobal("torch", "HalfStorage"); short("h"); short("cpu"); p.int(3); p.tuple(); p.raw(0x51)
        p.int(1); p.intTuple([2]); p.intTuple([1]); p.newFalse(); p.emptyDict()
        p.tuple()
        p.emptyDict()
        p.tuple(); p.reduce()
        // 'r': _rebuild_parameter_with_state(tensor over bool storage 'b', False, {}, {})
        short("r")
        stackGlobal("torch._utils", "_rebuild_parameter_with_state")
        p.mark()
        p.tensor("BoolStorage", key: "b", numel: 3, size: [3])
        p.newFalse(); p.emptyDict(); p.emptyDict()
        p.tuple(); p.reduce()
        // extras: a set, a frozenset, bytes8, bytearray8, a wide int, a memo reference
        short("tags"); p.raw(0x8f, 0x94); p.mark(); short("x"); p.int(2); p.raw(0x90)
        short("frozen"); p.mark(); p.int(1); p.raw(0x91)
        short("blob"); p.raw(0x8e); p.bytes += le64(3) + [1, 2, 3]
        short("buf"); p.raw(0x96); p.bytes += le64(2) + [9, 9]
        short("big"); p.raw(0x8a, 9); p.bytes += [0, 0, 0, 0, 0, 0, 0, 0, 1]
        short("neg"); p.raw(0x8a, 2); p.bytes += [0x00, 0xff]  // -256
        short("again"); p.get(1)  // memo 1 = "p"
        p.setItems()
        p.stop()
        let half: [UInt8] = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]  // 1.0, -2.0, 0.5
        let bytes = ZipBuilder.checkpoint(pickle: p.bytes, storages: [("u", floatBytes(six)), ("h", half), ("b", [1, 0, 1])])
        let c = try Checkpoint.load(bytes: bytes)
        XCTAssertEqual(c.tensors.map(\.name), ["p", "q", "r"])
        XCTAssertEqual(try c["p"]!.floats(), six)
        XCTAssertEqual(c["q"]!.dtype, .float16)
        XCTAssertEqual(try c["q"]!.floats(), [-2, 0.5])
        XCTAssertEqual(c["r"]!.dtype, .bool)
        XCTAssertEqual(try c["r"]!.bytes(), [1, 0, 1])
        XCTAssertEqual(c.metadata["tags"], "{'x', 2}")
        XCTAssertEqual(c.metadata["frozen"], "{1}")
        XCTAssertEqual(c.metadata["blob"], "b<3 bytes>")
        XCTAssertEqual(c.metadata["big"], "0x010000000000000000")
        XCTAssertEqual(c.metadata["neg"], "-256")
        XCTAssertEqual(c.metadata["again"], "p")
        XCTAssertEqual(c.metadataKeys, ["tags", "frozen", "blob", "buf", "big", "neg", "again"])
    }

    /// A module record: NEWOBJ(cls, ()) then BUILD with the nn.Module __dict__.
    func module(_ p: inout PickleBuilder, _ cls: (String, String), params: [(String, (inout PickleBuilder) -> Void)?],
                buffers: [(String, (inout PickleBuilder) -> Void)], nonPersistent: [String] = [],
                children: [(String, ((inout PickleBuilder) -> Void)?)]) {
        p.global(cls.0, cls.1)
        p.emptyTuple()
        p.raw(0x81)  // NEWOBJ
        p.emptyDict()
        p.mark()
        p.string("training"); p.newTrue()
        p.string("in_channels"); p.int(3)
        p.string("_parameters"); p.orderedDict(); p.mark()
        for entry in params {
            if let (name, make) = entry { p.string(name); make(&p) } else { p.string("bias"); p.none() }
        }
        p.setItems()
        p.string("_buffers"); p.orderedDict(); p.mark()
        for (name, make) in buffers { p.string(name); make(&p) }
        p.string("dropped"); p.none()
        p.setItems()
        p.string("_non_persistent_buffers_set")
        p.global("__builtin__", "set"); p.raw(0x5d); p.mark(); for n in nonPersistent { p.string(n) }; p.raw(0x65); p.raw(0x85); p.reduce()
        p.string("_modules"); p.orderedDict(); p.mark()
        for (name, make) in children {
            p.string(name)
            if let make { make(&p) } else { p.none() }
        }
        p.setItems()
        p.setItems()
        p.build()
    }

    func testWholePickledModuleWalksLikeStateDict() throws {
        var p = PickleBuilder()
        module(&p, ("fer_models", "Net"),
               params: [("weight", { $0.tensor(key: "0", numel: 6, size: [2, 3]) }), nil],
               buffers: [("running", { $0.tensor(key: "0", numel: 6, offset: 2, size: [2]) }),
                         ("scratch", { $0.tensor(key: "0", numel: 6, size: [1]) })],
               nonPersistent: ["scratch"],
               children: [("features", { q in
                   self.module(&q, ("torch.nn.modules.container", "Sequential"), params: [], buffers: [],
                               children: [("0", { r in
                                   self.module(&r, ("torch.nn.modules.conv", "Conv2d"),
                                               params: [("weight", { $0.tensor(key: "1", numel: 2, size: [2, 1, 1, 1]) })],
                                               buffers: [], children: [])
                               }), ("1", nil)])
               }), ("head", nil)])
        p.stop()
        let c = try Checkpoint.load(bytes: ZipBuilder.checkpoint(pickle: p.bytes, storages: [("0", floatBytes(six)), ("1", floatBytes([7, 8]))]))
        XCTAssertEqual(c.structure, "whole pickled module (fer_models.Net)")
        XCTAssertEqual(c.tensors.map(\.name), ["weight", "running", "features.0.weight"])
        XCTAssertEqual(try c["running"]!.floats(), [3, 4])
        XCTAssertEqual(try c["features.0.weight"]!.floats(), [7, 8])
    }

    func testNestedKeysAndExtrasIncludingNumpyScalarAndNamespace() throws {
        for key in ["state_dict", "model", "model_state_dict"] {
            var p = PickleBuilder()
            p.emptyDict()
            p.mark()
            p.string("epoch"); p.int(3)
            p.string("best_acc"); p.float(0.875)
            // numpy.float64(0.25): scalar(dtype('f8', False, True) + BUILD state, 8 bytes LE)
            p.string("np_loss")
            p.global("numpy.core.multiarray", "scalar")
            p.global("numpy", "dtype"); p.string("f8"); p.newFalse(); p.newTrue(); p.raw(0x87); p.reduce()
            p.mark(); p.int(3); p.string("<"); p.none(); p.none(); p.none(); p.int(255); p.int(255); p.int(0); p.tuple(); p.build()
            p.raw(0x43, 8); p.bytes += le64(0.25.bitPattern)
            p.raw(0x86); p.reduce()
            // argparse.Namespace(lr=0.1, arch='LFNSB2') via NEWOBJ + BUILD: inert data.
            p.string("args")
            p.global("argparse", "Namespace"); p.emptyTuple(); p.raw(0x81)
            p.emptyDict(); p.mark(); p.string("lr"); p.float(0.1); p.string("arch"); p.string("LFNSB2"); p.setItems(); p.build()
            p.string(key)
            p.beginStateDict()
            p.string("fc.weight"); p.tensor(key: "0", numel: 6, size: [2, 3])
            p.setItems()
            if key == "model_state_dict" {
                p.string("optimizer_state_dict"); p.emptyDict(); p.mark()
                p.string("state"); p.emptyDict(); p.mark(); p.int(0); p.emptyDict(); p.string("momentum_buffer")
                p.tensor(key: "9", numel: 6, size: [2, 3]); p.setItem(); p.setItems()
                p.setItems()
            }
            p.setItems()
            p.stop()
            // Storage '9' (optimizer state) is deliberately absent: it must never be read.
            let c = try Checkpoint.load(bytes: ZipBuilder.checkpoint(pickle: p.bytes, storages: [("0", floatBytes(six))]))
            XCTAssertEqual(c.tensors.map(\.name), ["fc.weight"], key)
            XCTAssertEqual(c.structure, key == "model_state_dict" ? "authors' training dict (model_state_dict)" : "nested under '\(key)'")
            if key == "model_state_dict" { XCTAssertEqual(c.metadata["optimizer_state_dict"], "{'state': {0: {'momentum_buffer': tensor(float32 [2, 3])}}}") }
            XCTAssertEqual(c.metadata["epoch"], "3")
            XCTAssertEqual(c.metadata["best_acc"], "0.875")
            XCTAssertEqual(c.metadata["np_loss"], "0.25")
            XCTAssertEqual(c.metadata["args"], "Namespace(lr=0.1, arch='LFNSB2')")
            XCTAssertNil(c.metadata[key])
        }
    }

    func testSafeTensorsRoundTripAndExportOfAFixture() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.safetensors").path
        try SafeTensors.write([("a\"b", .float32, [2, 3], floatBytes(six)), ("n", .int64, [], le64(5)), ("e", .bfloat16, [0], [])],
                              metadata: ["format": "x", "q\"uote": "v\n"], to: path)
        let c = try Checkpoint.load(path: path)
        XCTAssertEqual(c.container, .safetensors)
        XCTAssertEqual(c.tensors.map(\.name), ["a\"b", "n", "e"])
        XCTAssertEqual(try c["a\"b"]!.floats(), six)
        XCTAssertEqual(try c["n"]!.int64s(), [5])
        XCTAssertEqual(c["e"]!.shape, [0])
        XCTAssertEqual(c.metadata, ["format": "x", "q\"uote": "v\n"])
        XCTAssertThrowsError(try SafeTensors.write([("bad", .float32, [2], [1, 2, 3])], metadata: [:], to: path))

        // A checkpoint written back unchanged reads back bit-identically (what `export --raw` does).
        let source = try Repo.require("Tests/Fixtures/checkpoints/lfnsb7-views/model.pth", hint: "fixture generator")
        let original = try Checkpoint.load(path: source)
        let out = dir.appendingPathComponent("raw.safetensors").path
        try SafeTensors.write(original.tensors, metadata: [:], to: out)
        let back = try Checkpoint.load(path: out)
        XCTAssertEqual(back.tensors.map(\.name), original.tensors.map(\.name))
        for (a, b) in zip(original.tensors, back.tensors) {
            XCTAssertEqual(a.dtype, b.dtype)
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(try a.bytes(), try b.bytes(), a.name)
        }
    }

    func testDTypeHelpers() throws {
        XCTAssertEqual(TensorDType.allCases.map(\.byteSize), [4, 2, 2, 8, 8, 4, 2, 1, 1, 1])
        let t = try CheckpointTensor(name: "h", dtype: .float16, shape: [4], bytes: [0x01, 0x00, 0x00, 0x7c, 0x00, 0xfc, 0xff, 0x7b])
        // smallest subnormal, +inf, -inf, largest finite
        XCTAssertEqual(try t.floats(), [Float(5.960464477539063e-08), .infinity, -.infinity, 65504])
        let d = try CheckpointTensor(name: "d", dtype: .float64, shape: [1], bytes: le64((1.0 + 0x1p-30).bitPattern))
        XCTAssertEqual(try d.floats(), [1.0], "float64 rounds to nearest float32")
        XCTAssertThrowsError(try CheckpointTensor(name: "x", dtype: .float32, shape: [2], bytes: [0, 0, 0]))
    }
}
