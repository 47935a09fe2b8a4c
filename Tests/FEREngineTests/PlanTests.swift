import FERCheckpoint
import FEREngine
import FERTensor
import Foundation
import XCTest

/// The layer plan: variants a user gets by changing one constructor argument, a second network
/// (RetinaFace) at several input sizes, checkpoints whose shapes do not chain, and the memory
/// planner's one promise (buffers alive at the same time never overlap).
final class PlanTests: XCTestCase {
    private func variant(_ name: String) -> String {
        Fixtures.directory.appendingPathComponent("variants/\(name)/model.pth").path
    }

    private func variantExpected(_ name: String, _ output: String) throws -> Tensor {
        try NPY.read(path: Fixtures.directory.appendingPathComponent("variants/\(name)/random-b2.\(output).npy").path)
    }

    func testEveryVariantMatchesPyTorch() throws {
        let input = try Fixtures.input("random-b2")
        let architectures: [String: Architecture] = [
            "lfnsb7-ca-wide": .lfnsb(classes: 7), "lfnsb7-deep": .lfnsb(classes: 7), "lfnsb3": .lfnsb(classes: 3),
            "ddamnet7-att256": .ddamnet(classes: 7, heads: 2), "ddamnet7-4heads": .ddamnet(classes: 7, heads: 4), "lfn-deep": .lfn,
        ]
        for (name, architecture) in architectures.sorted(by: { $0.key < $1.key }) {
            let model = try FERModel(contentsOf: variant(name))
            XCTAssertEqual(model.architecture, architecture, name)
            let prediction = try model.predict(input)
            let embedding = !model.isClassifier
            assertMatchesPyTorch(prediction.outputs, try variantExpected(name, embedding ? "embedding" : "logits"), embedding: embedding, name)
            XCTAssertLessThanOrEqual(relativeError(prediction.featureMap, try variantExpected(name, "featuremap")), 1e-4, "\(name) featuremap")
        }
    }

    func testTheWiderAttentionVariantPlansItsOwnHiddenWidth() throws {
        // The memory-safety hole this plan closes: scratch sized by guessed widths.
        let model = try FERModel(contentsOf: variant("ddamnet7-att256"))
        let session = model.makeSession(batch: 1)
        let attention = Set(session.steps.indices.filter { session.steps[$0].label == "attention gates" && session.steps[$0].stage.hasPrefix("cat_head") })
        XCTAssertEqual(attention.count, 2)
        let scratch = session.memoryPlan.filter { p in attention.contains { p.name == "scratch of operation \($0)" } }
        XCTAssertEqual(scratch.map(\.count), [14 * 256, 14 * 256], "hidden layer of 256 over 7 rows and 7 columns")
        assertNoLiveBuffersOverlap(model, session)
    }

    func testCheckpointsWhoseShapesDoNotChainAreRefusedNamingKeyAndShapes() throws {
        for name in ["bad-project", "bad-fc", "bad-ddam-att"] {
            let expected = try String(contentsOfFile: Fixtures.directory.appendingPathComponent("variants/\(name)/expect.txt").path, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertThrowsError(try FERModel(contentsOf: variant(name)), name) { error in
                guard case .weightMismatch(_, _, _, let shapes) = error as? EngineError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(shapes.first, expected, "\(name): \(shapes)")
            }
        }
    }

    func testShapesThatImplyNegativeOrHugeSizesAreRefusedNotTrapped() throws {
        // Found by tools/fuzz/fuzz-plan: a Spatial Bias reduced to one channel makes the fc input
        // 4 * (1 - 3 + 1) = -4 wide.
        let checkpoint = try Checkpoint.load(path: Fixtures.root.appendingPathComponent("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth").path)
        func edited(_ shapes: [String: [Int]]) -> [(name: String, tensor: RawTensor)] {
            checkpoint.tensors.map { t in
                let shape = shapes[t.name] ?? t.shape
                return (t.name, RawTensor(shape: shape, values: { [Float](repeating: 0.5, count: shape.reduce(1, *)) }))
            }
        }
        var narrow: [String: [Int]] = ["sb.feature_reduction.0.weight": [1, 256, 1, 1]]
        for s in ["weight", "bias", "running_mean", "running_var"] { narrow["sb.feature_reduction.1.\(s)"] = [1] }
        XCTAssertThrowsError(try FERModel(stateDict: edited(narrow))) { error in
            XCTAssertTrue("\(error)".contains("fc.weight: the tensors before it imply the impossible shape [7, -4]"), "\(error)")
        }
        // An empty tensor (importers accept it) that declares a 2^40-wide expansion: its own
        // placeholder would be 2^46 floats; the load stops instead of allocating.
        XCTAssertThrowsError(try FERModel(stateDict: edited(["features.2.conv.conv.weight": [1 << 40, 0, 1, 1]]))) { error in
            XCTAssertTrue("\(error)".contains("features.2.conv.conv.weight: checkpoint [1099511627776, 0, 1, 1], expected [1099511627776, 64, 1, 1]"), "\(error)")
        }
    }

    func testATensorDeclaringMoreValuesThanMemoryIsNotReservedFor() throws {
        // Found by fuzz-plan: the arena was reserved for the sum of every declared shape, and a
        // sum past Int.max trapped. An unused key declaring 2^80 values is an unexpected key.
        let checkpoint = try Checkpoint.load(path: Fixtures.root.appendingPathComponent("Tests/Fixtures/checkpoints/lfnsb7-bare/model.pth").path)
        var tensors = checkpoint.tensors.map { t in (name: t.name, tensor: RawTensor(shape: t.shape, values: { try t.floats() })) }
        tensors.append((name: "huge", tensor: RawTensor(shape: [1 << 40, 1 << 40], values: { XCTFail("read"); return [] })))
        // ... and one the model ignores on purpose (LFNSB's unused BatchNorm1d) declaring as much.
        let bn = tensors.firstIndex { $0.name == "bn.weight" }!
        tensors[bn].tensor = RawTensor(shape: [1 << 40, 1 << 40], values: { XCTFail("read"); return [] })
        XCTAssertThrowsError(try FERModel(stateDict: tensors)) { error in
            guard case .weightMismatch(_, _, let unexpected, _) = error as? EngineError else { return XCTFail("\(error)") }
            XCTAssertEqual(unexpected, ["huge"])
        }
    }

    // MARK: RetinaFace

    private let retinaDirectory = Fixtures.directory.appendingPathComponent("retinaface")

    private func retinaFace() throws -> FERModel {
        try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path)
    }

    func testRetinaFaceHeadsMatchPyTorchAtThreeInputSizes() throws {
        let model = try retinaFace()
        XCTAssertEqual(model.architecture, .retinaFace)
        for size in ["320x320", "443x640", "75x101"] {
            let input = try NPY.read(path: retinaDirectory.appendingPathComponent("input-\(size).npy").path)
            let outputs = try model.evaluate(input)
            for name in ["boxes", "scores", "landmarks"] {
                let expected = try NPY.read(path: retinaDirectory.appendingPathComponent("\(size).\(name).npy").path)
                let actual = try XCTUnwrap(outputs[name], "\(size) \(name)")
                XCTAssertEqual(actual.shape, expected.shape, "\(size) \(name)")
                XCTAssertLessThanOrEqual(relativeError(actual, expected), 1e-4, "\(size) \(name)")
            }
        }
    }

    func testRetinaFaceStagesMatchAndBatchesAgreeWithSingleImages() throws {
        let model = try retinaFace()
        let input = try NPY.read(path: retinaDirectory.appendingPathComponent("input-75x101.npy").path)
        let report = try StageComparison.compare(model, input: input) {
            try? NPY.read(path: self.retinaDirectory.appendingPathComponent("stages/75x101/\($0).npy").path)
        }
        XCTAssertEqual(report.compared.count, 9, "\(report)")
        XCTAssertNil(report.firstDrift, "\(report)")

        let pair = try NPY.read(path: retinaDirectory.appendingPathComponent("input-320x320.npy").path)
        let session = try model.makeSession(batch: 2, height: 320, width: 320, threads: 2)
        try pair.data.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 2) }
        let scores = try NPY.read(path: retinaDirectory.appendingPathComponent("320x320.scores.npy").path)
        let got = Tensor(shape: scores.shape, data: Array(try XCTUnwrap(session.output("scores"))))
        XCTAssertLessThanOrEqual(relativeError(got, scores), 1e-4)
    }

    func testPlansForOtherSizesAreMadeOnDemandAndImpossibleSizesRefused() throws {
        let model = try retinaFace()
        let session = try model.makeSession(batch: 1, height: 75, width: 101)
        XCTAssertEqual(session.inputSize.height, 75)
        assertNoLiveBuffersOverlap(model, session)
        XCTAssertThrowsError(try model.makeSession(batch: 1, height: 0, width: 10))
        // DDAMNet's head only fits its training size: its 1x7 and 7x1 convolutions assume a 7x7 map.
        let ddamnet = try FERModel(contentsOf: Fixtures.directory.appendingPathComponent("models/ddamnet8-1head/model.pth").path)
        XCTAssertThrowsError(try ddamnet.makeSession(batch: 1, height: 128, width: 128)) { error in
            XCTAssertTrue("\(error)".contains("(cat_head0): pooled rows and columns 32x1x512 do not fit a 8x8x512 map"), "\(error)")
        }
        // LFNSB's adaptive pooling takes other sizes, as in PyTorch.
        let lfnsb = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        XCTAssertEqual(try lfnsb.makeSession(batch: 1, height: 128, width: 128).inputSize.width, 128)
    }

    func testThePlanRecordsTheProductKernelChosenPerShapeAndBothKernelsAgree() throws {
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        let session = model.makeSession(batch: 1)
        let labels = session.steps.map(\.label)
        // Every LFNSB convolution has at least 64 output channels: all run the packed kernel.
        XCTAssertEqual(labels.filter { $0.hasPrefix("1x1 packed GEMM + PReLU") }.count, 34, "\(labels)")
        XCTAssertEqual(labels.first, "3x3 conv s2 (direct)")
        XCTAssertFalse(labels.contains { $0.contains("x1 GEMM") || $0.contains("+ GEMM)") }, "\(labels)")
        // Every block's coordinate pooling is done by its mixed depthwise steps as they write (one
        // to three groups per block), none as a pass of its own.
        XCTAssertEqual(labels.filter { $0 == "coordinate pooling (in depthwise)" }.count, 34, "\(labels)")
        XCTAssertFalse(labels.contains("coordinate pooling"), "\(labels)")
        XCTAssertEqual(labels.filter { $0.hasPrefix("depthwise") && $0.hasSuffix(" + pooling") }.count, 2 + 9 * 1 + 2 + 16 * 1 + 3 + 6 * 2, "\(labels)")
        // Every KxK convolution runs DenseConvolution on the packed weights, RetinaFace's 8-channel
        // stem too, except its 3x3 convolutions at stride 1 (2 FPN merges, 5 per SSH module), which
        // run Winograd F(4x4, 3x3).
        let detector = try retinaFace().makeSession(batch: 1, height: 640, width: 640)
        XCTAssertEqual(detector.steps.first?.label, "3x3 conv s2 (direct) + LeakyReLU")
        XCTAssertFalse(detector.steps.contains { $0.label.contains("im2col") }, "\(detector.steps)")
        XCTAssertTrue(detector.steps.dropFirst().contains { $0.label == "1x1 packed GEMM + LeakyReLU" })
        XCTAssertEqual(detector.steps.filter { $0.label.hasPrefix("3x3 conv (Winograd)") }.count, 2 + 3 * 5, "\(detector.steps.map(\.label))")
        XCTAssertFalse(detector.steps.contains { $0.label.hasPrefix("3x3 conv (direct)") }, "\(detector.steps.map(\.label))")

        // One image on two threads runs OpenBLAS (its threads split the products); on one thread,
        // the packed kernel. The two agree.
        let image = Array(try Fixtures.input("random-b2").data.prefix(3 * 112 * 112))
        let two = model.makeSession(batch: 1, threads: 2)
        try image.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 1) }
        try image.withUnsafeBufferPointer { try two.run(nchw: $0, batch: 1) }
        let (packed, blas) = (Tensor(shape: [7], data: Array(session.outputs)), Tensor(shape: [7], data: Array(two.outputs)))
        XCTAssertLessThanOrEqual(relativeError(packed, blas), 1e-5, "\(packed.data) against \(blas.data)")
    }

    // MARK: Memory planner

    func testLiveBuffersNeverOverlapInAnyFixturePlan() throws {
        for c in try Fixtures.checkpoints() where c.expected != nil && c.form.hasSuffix("bare") || ["lfn", "mfn", "ddamnet8-1head"].contains(c.form) {
            let model = try FERModel(contentsOf: c.path)
            assertNoLiveBuffersOverlap(model, model.makeSession(batch: 1))
        }
        let detector = try retinaFace()
        assertNoLiveBuffersOverlap(detector, try detector.makeSession(batch: 1, height: 443, width: 640))
    }

    func testThePlannerReusesMemoryOfBuffersThatAreNoLongerLive() {
        // a [0,1] and c [2,3] never meet: c reuses a's place; b [1,2] meets both.
        let buffers = [MemoryPlanner.Buffer(size: 100, first: 0, last: 1), .init(size: 50, first: 1, last: 2), .init(size: 100, first: 2, last: 3)]
        let (offsets, size) = MemoryPlanner.place(buffers)
        XCTAssertEqual(offsets[0], offsets[2])
        XCTAssertEqual(size, 112 + 64)
        XCTAssertTrue(offsets[1] >= 112 || offsets[1] + 64 <= offsets[0])
    }

    /// Every pair of buffers (tensors and scratch) whose lifetimes meet occupies disjoint floats.
    /// Tensor lifetimes are worked out here from the graph, independently of the planner.
    private func assertNoLiveBuffersOverlap(_ model: FERModel, _ session: InferenceSession, file: StaticString = #filePath, line: UInt = #line) {
        let graph = model.graph
        var spans: [(name: String, first: Int, last: Int, start: Int, end: Int)] = []
        for p in session.memoryPlan {
            var (first, last) = (p.first, p.last)
            if p.name.hasPrefix("tensor "), let t = Int(p.name.dropFirst(7)) {
                first = t == 0 ? -1 : Int.max
                last = -1
                for (i, op) in graph.operations.enumerated() where op.output == t || op.inputs.contains(t) {
                    if op.output == t { first = min(first, i) }
                    last = max(last, i)
                }
                // A pooling done inside the depthwise steps before it writes from the first of them.
                if first >= 0, first < graph.operations.count, session.steps[first].label == "coordinate pooling (in depthwise)" {
                    let pooledFrom = graph.operations[first].inputs[0]
                    while first > 0 && graph.operations[first - 1].output == pooledFrom { first -= 1 }
                }
                if graph.outputs.contains(where: { $0.tensor == t }) { last = graph.operations.count }
            }
            spans.append((p.name, first, max(first, last), p.offset, p.offset + p.count))
        }
        XCTAssertEqual(spans.filter { $0.name.hasPrefix("tensor") }.count, graph.tensorCount, file: file, line: line)
        for a in 0..<spans.count {
            XCTAssertLessThanOrEqual(spans[a].end, session.arenaFloatsPerImage, file: file, line: line)
            for b in (a + 1)..<spans.count where spans[a].first <= spans[b].last && spans[b].first <= spans[a].last {
                let disjoint = spans[a].end <= spans[b].start || spans[b].end <= spans[a].start
                if !disjoint { return XCTFail("\(spans[a]) and \(spans[b]) overlap while both live", file: file, line: line) }
            }
        }
    }
}

/// Fused model files carry the graph: they run without architecture code, and a tampered graph
/// is refused with the operation and the reason, never run.
final class FusedGraphTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fer-graph-\(getpid())-\(name.hashValue)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: directory) }

    func testDetectorAndVariantsRoundTripThroughFusedFiles() throws {
        let cases: [(String, String)] = [
            ("retinaface", Fixtures.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path),
            ("lfnsb7-deep", Fixtures.directory.appendingPathComponent("variants/lfnsb7-deep/model.pth").path),
        ]
        for (name, path) in cases {
            let original = try FERModel(contentsOf: path)
            let fused = directory.appendingPathComponent("\(name).safetensors").path
            try FusedModelFile.write(original, to: fused)
            let loaded = try FERModel(contentsOf: fused)
            XCTAssertEqual(loaded.graph, original.graph, name)
            let input = name == "retinaface"
                ? try NPY.read(path: Fixtures.directory.appendingPathComponent("retinaface/input-75x101.npy").path)
                : try Fixtures.input("random-b1")
            let (a, b) = (try loaded.evaluate(input), try original.evaluate(input))
            XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), name)
            for key in a.keys { XCTAssertEqual(a[key], b[key], "\(name) \(key)") }
        }
    }

    /// Writes `model`'s fused file with its graph edited by `edit`, and loads it.
    private func load(tampering edit: (inout ModelGraph) -> Void) throws -> FERModel {
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        let original = directory.appendingPathComponent("original.safetensors").path
        let path = directory.appendingPathComponent("tampered.safetensors").path
        try FusedModelFile.write(model, to: original)
        let checkpoint = try Checkpoint.load(path: original)
        var graph = model.graph
        edit(&graph)
        var metadata = checkpoint.metadata
        metadata["graph"] = String(decoding: try JSONEncoder().encode(graph), as: UTF8.self)
        try SafeTensors.write(checkpoint.tensors, metadata: metadata, to: path)
        return try FERModel(contentsOf: path)
    }

    func testATamperedGraphIsRefusedWithTheOperationAndTheReason() throws {
        let edits: [(String, (inout ModelGraph) -> Void, String)] = [
            ("input out of range", { $0.operations[3].inputs = [10_000] }, "out of range"),
            ("read before written", { $0.operations[1].inputs = [$0.tensorCount - 1] }, "before anything writes it"),
            ("weight of another shape", { g in
                if case .convolution(var c) = g.operations[0].kind { c.weight = "fc.weight"; g.operations[0].kind = .convolution(c) }
            }, "fc.weight"),
            ("missing weight", { g in
                if case .depthwise(var d) = g.operations[1].kind { d.weight = "nope"; g.operations[1].kind = .depthwise(d) }
            }, "missing weight 'nope'"),
            ("kernel larger than its input", { g in
                if case .depthwise(var d) = g.operations[1].kind { d.kernelHeight = 500; g.operations[1].kind = .depthwise(d) }
            }, "does not fit"),
            ("output nothing writes", { $0.outputs[0].tensor = 99_999 }, "featureMap"),
            ("a huge pool", { $0.operations.append(Operation(.adaptiveAveragePool(height: 1 << 40, width: 1), inputs: [0], output: 1, stage: "x")) },
             "adaptive pool"),
        ]
        for (label, edit, needle) in edits {
            XCTAssertThrowsError(try load(tampering: edit), label) { error in
                XCTAssertTrue("\(error)".contains(needle), "\(label): \(error)")
            }
        }
    }
}
