import Dispatch
import FERKernels
import FERTensor
import Foundation

/// A loaded, folded model, ready to run. Immutable and safe to share between threads; each
/// thread runs it through its own ``InferenceSession``.
public final class FERModel: @unchecked Sendable {
    // @unchecked: `plans` is only touched under `lock`; everything else is immutable.
    /// The recognised architecture.
    public let architecture: Architecture
    /// The folded, packed weights the model runs on (what a fused model file stores).
    public let folded: FoldedParameters
    /// The network as operations over tensors (what a fused model file stores beside the weights).
    public let graph: ModelGraph
    /// Parameters of the PyTorch model this was built from (`sum(p.numel() for p in
    /// model.parameters())`: every tensor of the state_dict but BatchNorm running statistics),
    /// when known.
    public let originalParameterCount: Int?
    /// The plan at the model's own input size (112x112 for the classifiers).
    let defaultPlan: ExecutionPlan
    /// Packed copies of the convolutions' weights, shared by every plan.
    let packing = WeightPacking()
    private let lock = NSLock()
    private var plans: [[Int]: ExecutionPlan] = [:]

    /// Input size of a model that takes any size (the detector) when none is given: the long side
    /// of the product's default detection size.
    public static let defaultDetectionSize = 640

    /// Builds a model from folded weights and the graph that uses them (from a builder or a fused
    /// model file). Every operation is checked against its weights here.
    public init(folded: FoldedParameters, graph: ModelGraph, originalParameterCount: Int? = nil) throws {
        self.architecture = folded.architecture
        self.folded = folded
        self.graph = graph
        self.originalParameterCount = originalParameterCount
        let size = (graph.inputHeight ?? FERModel.defaultDetectionSize, graph.inputWidth ?? FERModel.defaultDetectionSize)
        defaultPlan = try ExecutionPlan(graph: graph, weights: folded, packing: packing, height: size.0, width: size.1)
        plans[[size.0, size.1]] = defaultPlan
        let used = Set(graph.operations.flatMap(\.weightNames))
        let unused = folded.names.filter { !used.contains($0) }
        if !unused.isEmpty {
            throw EngineError.invalidFusedModel("tensors the graph does not use: \(unused.prefix(10).joined(separator: ", "))")
        }
    }

    /// Recognises the architecture of a PyTorch state_dict, checks every key strictly, folds it
    /// and builds its graph.
    ///
    /// - Parameter tensors: the state_dict's tensors in file order, `module.` prefixes removed.
    public convenience init(stateDict tensors: [(name: String, tensor: RawTensor)]) throws {
        let (folded, graph, parameters) = try Self.build(stateDict: tensors)
        try self.init(folded: folded, graph: graph, originalParameterCount: parameters)
    }

    /// The folded weights and graph of a state_dict (see ``init(stateDict:)``), without a plan: the
    /// caller can let go of the checkpoint before the plan packs its weights.
    static func build(stateDict tensors: [(name: String, tensor: RawTensor)]) throws
        -> (folded: FoldedParameters, graph: ModelGraph, parameters: Int) {
        var byName: [String: RawTensor] = [:]
        for (name, tensor) in tensors { byName[name] = tensor }
        let architecture = try Architecture.recognise(keys: Set(byName.keys), shapeOf: { byName[$0]?.shape })
        let raw = RawWeights(order: tensors.map(\.name), tensors: byName, architecture: architecture.description)
        // Declared shapes may overflow when multiplied out; the strict load refuses such keys below.
        let parameters = RawWeights.elementTotal(tensors.filter { !RawWeights.isBuffer($0.name) }.map(\.tensor.shape))
        let (graph, folded) = architecture == .retinaFace
            ? try RetinaFaceBuilder.build(raw) : try LFNFamily.build(architecture, raw)
        return (folded, graph, parameters)
    }

    /// The plan for one input size, made on first use and kept.
    func plan(height: Int, width: Int) throws -> ExecutionPlan {
        lock.lock()
        defer { lock.unlock() }
        if let plan = plans[[height, width]] { return plan }
        let plan = try ExecutionPlan(graph: graph, weights: folded, packing: packing, height: height, width: width)
        // A detector sees many photo sizes; keep the cache bounded.
        if plans.count >= 64 { plans = [[defaultPlan.height, defaultPlan.width]: defaultPlan] }
        plans[[height, width]] = plan
        return plan
    }

    /// Whether the model outputs class logits (LFNSB, DDAMNet) rather than an embedding (LFN, MFN)
    /// or detections (RetinaFace).
    public var isClassifier: Bool { architecture.classCount != nil }
    /// Logit count of a classifier, or the embedding width (0 for the detector).
    public var outputWidth: Int {
        guard let out = graph.output("logits") ?? graph.output("embedding") else { return 0 }
        return defaultPlan.shapes[out.tensor].channels
    }
    /// Channels of the backbone's feature map (0 for the detector).
    public var featureChannels: Int { graph.output("featureMap").map { defaultPlan.shapes[$0.tensor].channels } ?? 0 }
    /// The expected input of the classifiers: `[N, 3, 112, 112]`, normalised with the ImageNet mean and std.
    public static let inputShape = ModelInput.shape
    /// This model's own input size, `(height, width)`.
    public var inputSize: (height: Int, width: Int) { (defaultPlan.height, defaultPlan.width) }

    /// Buffers for running batches of up to `batch` images on `threads` threads, at the model's
    /// own input size.
    public func makeSession(batch: Int, threads: Int = 1) -> InferenceSession {
        InferenceSession(model: self, plan: defaultPlan, batch: batch, threads: threads)
    }

    /// Buffers for another input size (the detector takes any; the classifiers only 112x112).
    public func makeSession(batch: Int, height: Int, width: Int, threads: Int = 1) throws -> InferenceSession {
        InferenceSession(model: self, plan: try plan(height: height, width: width), batch: batch, threads: threads)
    }

    /// Runs a batch `[N, 3, 112, 112]` (or one image `[3, 112, 112]`) and returns every output.
    /// Convenient but allocating; steady-state callers reuse an ``InferenceSession``.
    public func predict(_ input: Tensor) throws -> Prediction {
        try session(for: input).predict(input)
    }

    /// Runs `input` (`[N, C, H, W]` at any size the model takes) and returns every output by name:
    /// `logits`, `probabilities`, `embedding`, `featureMap` (`[N, C, H, W]`) or the detector's
    /// `boxes`, `scores`, `landmarks` (`[N, anchors, k]`).
    public func evaluate(_ input: Tensor) throws -> [String: Tensor] {
        try session(for: input).evaluate(input, observe: nil)
    }

    /// Runs `input` and reports each stage's activation (NCHW, per forward pass of at most
    /// ``InferenceSession/microBatch`` images) under the PyTorch module names of the stage
    /// (`features.0` ... `features.8`, then the head's), for debugging.
    public func traceStages(_ input: Tensor, _ observe: (String, Tensor) -> Void) throws -> [String: Tensor] {
        let session = try session(for: input)
        return try withoutActuallyEscaping(observe) { try session.evaluate(input, observe: $0) }
    }

    /// A session sized for `input` that also copies out the feature map.
    private func session(for input: Tensor) throws -> InferenceSession {
        let shape = input.shape.count == 3 ? [1] + input.shape : input.shape
        guard shape.count == 4, shape[0] >= 1 else {
            throw EngineError.inputShape(expected: "[N, \(graph.inputChannels), H, W]", got: input.shape)
        }
        let session = try makeSession(batch: shape[0], height: shape[2], width: shape[3])
        session.capturesFeatureMap = true
        return session
    }
}

extension Operation {
    /// Names of the folded weights this operation reads.
    var weightNames: [String] {
        switch kind {
        case .convolution(let c): return [c.weight] + [c.bias, c.slope].compactMap { $0 }
        case .depthwise(let d): return [d.weight] + [d.bias, d.slope].compactMap { $0 }
        case .attentionGates(let a): return [a.conv1Weight, a.conv1Bias, a.conv2Weight, a.conv2Bias, a.conv3Weight, a.conv3Bias]
        case .channelConvolution(let c): return [c.weight, c.bias]
        default: return []
        }
    }
}

/// Everything one forward pass of a classifier or embedder gives, for a batch of N.
public struct Prediction: Sendable {
    /// `[N, classes]` logits for a classifier, `[N, width]` L2-normalised embeddings for an embedder.
    public var outputs: Tensor
    /// Softmax of the logits (classifiers only).
    public var probabilities: Tensor?
    /// The backbone's feature map `[N, C, 7, 7]`.
    public var featureMap: Tensor
    /// The feature map averaged over its 7x7 positions, `[N, C]`.
    public var pooledFeatures: Tensor
}

/// Buffers for one model, one input size, a maximum batch size and a thread count, planned and
/// allocated once.
///
/// With several threads, a batch is split into one chunk per thread, each run through its own
/// workspace; a single image is shared by a team of threads (the caller and helpers started on
/// its first run, asleep between runs), which split each convolution's output. Results are the
/// same floats whatever the thread count. A single image's run allocates nothing after the
/// first. Not thread-safe: use one session per thread.
public final class InferenceSession {
    public let model: FERModel
    /// Largest batch this session runs.
    public let capacity: Int
    /// Threads a run uses.
    public let threads: Int
    /// Input height and width.
    public var inputSize: (height: Int, width: Int) { (plan.height, plan.width) }
    /// Whether runs also copy out the feature map (off by default: classification never reads it).
    public var capturesFeatureMap = false
    let plan: ExecutionPlan
    let workers: [Workspace]
    /// One buffer per graph output for the whole batch, in `plan.graph.outputs` order.
    private let results: [UnsafeMutablePointer<Float>]
    private let resultSizes: [Int]
    private var lastBatch = 0

    /// Images one workspace runs per forward pass. Larger batches are run as several such passes:
    /// activations of a few images stay in cache, and measured throughput is flat from 1 to 32.
    static let microBatch = 4

    init(model: FERModel, plan: ExecutionPlan, batch: Int, threads: Int) {
        precondition(batch >= 1, "batch size must be at least 1")
        precondition(threads >= 1, "thread count must be at least 1")
        self.model = model
        self.plan = plan
        self.capacity = batch
        self.threads = threads
        resultSizes = plan.graph.outputs.map { plan.shapes[$0.tensor].count }
        results = resultSizes.map { size in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, size * batch))
            p.initialize(repeating: 0, count: max(1, size * batch))
            return p
        }
        let micro = min((batch + threads - 1) / threads, InferenceSession.microBatch)
        workers = (0..<min(threads, batch)).map { _ in Workspace(plan: plan, batch: micro) }
    }

    deinit { for p in results { p.deallocate() } }

    /// Per-stage timing of every run while set (the first workspace's passes when several threads run).
    public var profile: StageProfile? {
        get { workers[0].profile }
        set { workers[0].profile = newValue }
    }

    /// Where the memory planner put each tensor and scratch buffer, per image.
    public var memoryPlan: [BufferPlacement] { plan.placements }
    /// Floats of arena one image needs (each worker holds this times its micro-batch).
    public var arenaFloatsPerImage: Int { plan.arenaSize }
    /// Operations of one pass with the profile label of each (its PyTorch module and kernel).
    public var steps: [(stage: String, label: String)] { plan.steps.map { ($0.stage, $0.label) } }

    /// Bytes of activation memory this session holds.
    public var workspaceBytes: Int { workers.reduce(0) { $0 + $1.byteCount } }

    /// Values per image of the input.
    private var inputCount: Int { plan.graph.inputChannels * plan.height * plan.width }

    /// Runs `batch` images given as NCHW floats (`batch * 3 * height * width` values), writing the
    /// results into this session's buffers (see ``outputs``, ``probabilities``, ``output(_:)``).
    public func run(nchw input: UnsafeBufferPointer<Float>, batch: Int) throws {
        guard batch >= 1, batch <= capacity, input.count == batch * inputCount else {
            throw EngineError.inputShape(expected: "[1...\(capacity), \(plan.graph.inputChannels), \(plan.height), \(plan.width)]", got: [input.count])
        }
        run(input.baseAddress!, batch: batch, channelsLast: false, observe: nil)
    }

    /// Runs `batch` images given as NHWC floats (`batch * height * width * 3` values, the layout
    /// images are decoded in), without the transposition ``run(nchw:batch:)`` makes.
    public func run(nhwc input: UnsafeBufferPointer<Float>, batch: Int) throws {
        guard batch >= 1, batch <= capacity, input.count == batch * inputCount else {
            throw EngineError.inputShape(expected: "[1...\(capacity), \(plan.height), \(plan.width), \(plan.graph.inputChannels)]", got: [input.count])
        }
        run(input.baseAddress!, batch: batch, channelsLast: true, observe: nil)
    }

    private func run(_ input: UnsafePointer<Float>, batch: Int, channelsLast: Bool, observe: StageObserver?) {
        let plane = inputCount
        let used = min(workers.count, batch)
        let share = (batch + used - 1) / used
        lastBatch = batch
        // Worker i runs images [i * share, min(batch, (i + 1) * share)) in micro-batches.
        func runWorker(_ i: Int) {
            let worker = workers[i]
            var start = i * share
            let end = min(batch, start + share)
            while start < end {
                worker.active = min(worker.batch, end - start)
                stage(input + start * plane, channelsLast: channelsLast, into: worker)
                plan.forward(worker, observe: observe)
                collect(worker, at: start)
                start += worker.active
            }
        }
        // OpenBLAS runs only the few products our tiles lose (8 or fewer columns), on this thread.
        BLASThreads.set(1)
        if used == 1 {
            workers[0].use(threads: threads)
            runWorker(0)
        } else {
            for w in workers { w.use(threads: 1) }
            // Each iteration touches only its own workspace and its own rows of the results.
            let job = UncheckedSendable(runWorker)
            DispatchQueue.concurrentPerform(iterations: used) { job.value($0) }
        }
    }

    /// Copies input into a workspace's NHWC input tensor.
    private func stage(_ input: UnsafePointer<Float>, channelsLast: Bool, into worker: Workspace) {
        let plane = plan.height * plan.width, c = plan.graph.inputChannels
        if channelsLast {
            worker.input.update(from: input, count: worker.active * plane * c)
        } else {
            ChannelOrder.toChannelsLast(input, worker.input, batch: worker.active, channels: c, positions: plane)
        }
    }

    /// Copies a pass's outputs into rows `start ..< start + active` of the results.
    private func collect(_ worker: Workspace, at start: Int) {
        let n = worker.active
        for (i, out) in plan.graph.outputs.enumerated() {
            let size = resultSizes[i]
            let src = worker.tensor(out.tensor), dst = results[i] + start * size
            switch out.layout {
            case .map:
                guard capturesFeatureMap else { continue }
                let s = plan.shapes[out.tensor]
                ChannelOrder.toChannelsFirst(src, dst, batch: n, channels: s.channels, positions: s.height * s.width)
            case .vector, .rows:
                if out.optional && !capturesFeatureMap { continue }
                dst.update(from: src, count: n * size)
            }
        }
    }

    private func result(_ name: String) -> (pointer: UnsafeMutablePointer<Float>, size: Int)? {
        guard let i = plan.graph.outputs.firstIndex(where: { $0.name == name }) else { return nil }
        return (results[i], resultSizes[i])
    }

    /// Output `name` of the last run, all images (see ``FERModel/evaluate(_:)`` for the names).
    public func output(_ name: String) -> UnsafeBufferPointer<Float>? {
        result(name).map { UnsafeBufferPointer(start: $0.pointer, count: lastBatch * $0.size) }
    }

    /// The outputs of the last run, `batch x outputWidth` values (logits or embeddings).
    public var outputs: UnsafeBufferPointer<Float> {
        output("logits") ?? output("embedding") ?? UnsafeBufferPointer(start: nil, count: 0)
    }

    /// Softmax probabilities of the last run (classifiers; empty for embedders).
    public var probabilities: UnsafeBufferPointer<Float> {
        output("probabilities") ?? UnsafeBufferPointer(start: nil, count: 0)
    }

    /// Runs `input` (`[N, 3, 112, 112]` or `[3, 112, 112]`) and copies out every output.
    public func predict(_ input: Tensor) throws -> Prediction {
        let all = try evaluate(input, observe: nil)
        guard let outputs = all["logits"] ?? all["embedding"] else {
            throw EngineError.invalidPlan(operation: plan.steps.count, stage: "", reason: "\(model.architecture) has no logits or embedding; use evaluate")
        }
        let map = all["featureMap"] ?? Tensor(shape: [outputs.shape[0], 0, 0, 0], data: [])
        let (n, c, hw) = (map.shape[0], map.shape[1], map.shape[2] * map.shape[3])
        var pooled = [Float](repeating: 0, count: n * c)
        for i in 0..<n * c {
            var sum: Float = 0
            for p in 0..<hw { sum += map.data[i * hw + p] }
            pooled[i] = sum / Float(max(hw, 1))
        }
        return Prediction(outputs: outputs, probabilities: all["probabilities"], featureMap: map,
                          pooledFeatures: Tensor(shape: [n, c], data: pooled))
    }

    func evaluate(_ input: Tensor, observe: StageObserver?) throws -> [String: Tensor] {
        let c = plan.graph.inputChannels
        let shape = input.shape.count == 3 ? [1] + input.shape : input.shape
        guard shape.count == 4, shape[1] == c, shape[2] == plan.height, shape[3] == plan.width, shape[0] >= 1, shape[0] <= capacity else {
            throw EngineError.inputShape(expected: "[N, \(c), \(plan.height), \(plan.width)] with 1 <= N <= \(capacity)", got: input.shape)
        }
        input.data.withUnsafeBufferPointer { run($0.baseAddress!, batch: shape[0], channelsLast: false, observe: observe) }
        let n = lastBatch
        var all: [String: Tensor] = [:]
        for (i, out) in plan.graph.outputs.enumerated() where !out.optional || capturesFeatureMap {
            let s = plan.shapes[out.tensor]
            let dims: [Int]
            switch out.layout {
            case .vector: dims = [n, s.channels]
            case .map: dims = [n, s.channels, s.height, s.width]
            case .rows(let k): dims = [n, s.count / k, k]
            }
            all[out.name] = Tensor(shape: dims, data: Array(UnsafeBufferPointer(start: results[i], count: n * resultSizes[i])))
        }
        return all
    }
}

/// Hands a value to concurrently running code whose isolation the compiler cannot see.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
