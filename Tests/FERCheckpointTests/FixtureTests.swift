import FERCheckpoint
import Foundation
import XCTest

/// Every checkpoint the fixture generator wrote (PyTorch's own files) imports bit-identically.
final class FixtureTests: XCTestCase {
    /// (checkpoint path, tensors.tsv path, meta) for every checkpoint in fixtures.json, or for
    /// every model.pth found when the index is absent.
    private func fixtureCheckpoints() throws -> [(path: String, tsv: String, meta: [String: Any])] {
        let index = Repo.path("Tests/Fixtures/fixtures.json")
        if let data = FileManager.default.contents(atPath: index),
           let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
           let list = json["checkpoints"] as? [[String: Any]] {
            return list.compactMap { entry in
                guard let path = entry["path"] as? String, let tsv = entry["tensors"] as? String else { return nil }
                return (Repo.path(path), Repo.path(tsv), entry["meta"] as? [String: Any] ?? [:])
            }
        }
        var found: [(String, String, [String: Any])] = []
        let base = Repo.path("Tests/Fixtures")
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        for case let relative as String in walker where relative.hasSuffix("model.pth") {
            let path = base + "/" + relative
            found.append((path, String(path.dropLast(3)) + "tensors.tsv", [:]))
        }
        return found.sorted { $0.0 < $1.0 }
    }

    func testEveryFixtureCheckpointMatchesItsTensorsTSV() throws {
        let cases = try fixtureCheckpoints()
        guard !cases.isEmpty else { throw XCTSkip("no fixture checkpoints under Tests/Fixtures (run tools/reference/make_fixtures.py)") }
        var checked = 0
        for c in cases {
            guard FileManager.default.fileExists(atPath: c.path) else {
                XCTFail("fixtures.json lists \(c.path), which is missing")
                continue
            }
            let label = URL(fileURLWithPath: c.path).deletingLastPathComponent().lastPathComponent
            let checkpoint: Checkpoint
            do {
                checkpoint = try Checkpoint.load(path: c.path)
            } catch {
                XCTFail("\(label): \(error)")
                continue
            }
            assertMatches(checkpoint, try TSV.read(c.tsv), label)
            if let container = c.meta["container"] as? String {
                XCTAssertEqual(checkpoint.container.rawValue, container, "\(label): container")
            }
            // Structure as the generator describes it.
            switch c.meta["structure"] as? String {
            case "authors": XCTAssertTrue(checkpoint.structure.hasPrefix("authors' training dict"), "\(label): \(checkpoint.structure)")
            case "bare": XCTAssertTrue(checkpoint.structure.hasPrefix("bare state_dict"), "\(label): \(checkpoint.structure)")
            case "nested":
                let key = c.meta["state_dict_key"] as? String ?? "?"
                XCTAssertTrue(checkpoint.structure.hasPrefix("nested under '\(key)'"), "\(label): \(checkpoint.structure)")
            case "whole-module": XCTAssertTrue(checkpoint.structure.hasPrefix("whole pickled module"), "\(label): \(checkpoint.structure)")
            default: break
            }
            // Non-tensor top-level values come through as text.
            if let extras = c.meta["extras"] as? [String: Any] {
                for (key, value) in extras {
                    let text: String
                    switch value {
                    case let s as String: text = s
                    case let n as NSNumber where ["d", "f"].contains(String(cString: n.objCType)): text = "\(n.doubleValue)"
                    case let n as NSNumber: text = "\(n.intValue)"
                    default: continue
                    }
                    XCTAssertEqual(checkpoint.metadata[key], text, "\(label): metadata \(key)")
                }
            }
            checked += 1
        }
        XCTAssertEqual(checked, cases.count)
    }

    func testAuthorsCheckpointSkipsOptimizerAndKeepsIter() throws {
        let checkpoint = try Checkpoint.load(path: try Repo.reference())
        XCTAssertEqual(checkpoint.container, .zip)
        XCTAssertEqual(checkpoint.structure, "authors' training dict (model_state_dict)")
        XCTAssertEqual(checkpoint.metadata["iter"], "40")
        XCTAssertNotNil(checkpoint.metadata["optimizer_state_dict"])
        XCTAssertFalse(checkpoint.tensors.contains { $0.name.hasPrefix("state.") || $0.name.contains("momentum") })
        // Contiguous little-endian tensors point into the mapping (no copy).
        XCTAssertTrue(checkpoint.tensors.allSatisfy(\.isZeroCopy))
        // floats() agrees with the raw bytes.
        let t = checkpoint.tensors[0]
        let floats = try t.floats()
        XCTAssertEqual(floats.count, t.count)
        try t.withUnsafeRawBytes { raw in
            for i in [0, t.count / 2, t.count - 1] {
                XCTAssertEqual(floats[i].bitPattern, UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        }
        XCTAssertThrowsError(try checkpoint.tensors.first { $0.dtype == .int64 }!.floats())
        // A tensor keeps the file mapping alive after its checkpoint is gone.
        let (kept, crc): (CheckpointTensor, UInt32) = try {
            let c = try Checkpoint.load(path: try Repo.reference())
            let last = c.tensors[c.tensors.count - 1]
            return (last, try last.withUnsafeRawBytes { crc32Of($0) })
        }()
        XCTAssertEqual(try kept.withUnsafeRawBytes { crc32Of($0) }, crc)
    }

    func testViewsFixtureMaterialisesNonContiguousTensors() throws {
        let path = try Repo.require("Tests/Fixtures/checkpoints/lfnsb7-views/model.pth", hint: "fixture generator")
        let checkpoint = try Checkpoint.load(path: path)
        // Some tensors there are transposed / channels_last views: they must have been copied.
        XCTAssertTrue(checkpoint.tensors.contains { !$0.isZeroCopy }, "expected materialised non-contiguous tensors")
    }

    func testReducedPrecisionConvertToFloat() throws {
        let f32 = try Checkpoint.load(path: try Repo.require("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth", hint: "fixture generator"))
        for (form, dtype) in [("lfnsb7-float16", TensorDType.float16), ("lfnsb7-bfloat16", .bfloat16), ("lfnsb7-float64", .float64)] {
            let other = try Checkpoint.load(path: try Repo.require("Tests/Fixtures/checkpoints/\(form)/model.pth", hint: "fixture generator"))
            let name = "features.0.c.weight"
            guard let low = other[name], let full = f32[name] else { return XCTFail("\(form): \(name) missing") }
            XCTAssertEqual(low.dtype, dtype)
            let a = try low.floats(), b = try full.floats()
            XCTAssertEqual(a.count, b.count)
            let tolerance: Float = dtype == .bfloat16 ? 1e-2 : (dtype == .float16 ? 1e-3 : 1e-7)
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: tolerance * max(1, abs(y)), form) }
            if dtype == .float64 {
                XCTAssertEqual(try low.doubles().map { Float($0) }, b, "float64 rounds to nearest float32")
            }
        }
    }

    func testRetinaFaceLegacyFile() throws {
        guard FileManager.default.fileExists(atPath: Repo.path("../shared")) else {
            throw XCTSkip("../shared is absent: the RetinaFace reference file lives in ../shared/data")
        }
        let path = try Repo.require("../shared/data/retinaface-mobilenet0.25.pth", hint: "shared reference data")
        let checkpoint = try Checkpoint.load(path: path)
        XCTAssertEqual(checkpoint.container, .legacy)
        XCTAssertEqual(checkpoint.tensors.count, 300)
        XCTAssertEqual(checkpoint.tensors.first?.name, "body.stage1.0.0.weight")
        XCTAssertEqual(checkpoint.tensors.last?.name, "LandmarkHead.2.conv1x1.bias")
        if let tsv = try? Repo.require("Tests/Fixtures/thirdparty/retinaface-mobilenet0.25.tensors.tsv", hint: "") {
            assertMatches(checkpoint, try TSV.read(tsv), "retinaface")
        }
    }

    func testMTCNNLegacyFiles() throws {
        for net in ["pnet", "rnet", "onet"] {
            let path = try Repo.require(".downloads/facenet_pytorch/\(net).pt",
                                        hint: "fetched from the facenet-pytorch wheel by tools/setup")
            let checkpoint = try Checkpoint.load(path: path)
            XCTAssertEqual(checkpoint.container, .legacy, net)
            let tsv = try Repo.require("Tests/Fixtures/thirdparty/mtcnn-\(net).tensors.tsv", hint: "fixture generator")
            assertMatches(checkpoint, try TSV.read(tsv), "mtcnn-\(net)")
        }
    }
}
