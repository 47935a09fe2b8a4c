import Dispatch
import FERKernels
import FERTensor

/// A loaded, folded model, ready to run. Immutable and safe to share between threads; each
/// thread runs it through its own ``InferenceSession``.
public final class FERModel: Sendable {
    /// The recognised architecture.
    public let architecture: Architecture
    /// The folded, packed weights the model runs on (what a fused model file stores).
    public let folded: FoldedParameters
    let network: Network

    /// Parameters of the PyTorch model this was built from (`sum(p.numel() for p in
    /// model.parameters())`: every tensor of the state_dict but BatchNorm running statistics),
    /// when known.
    public let originalParameterCount: Int?

    /// Builds a model from folded parameters (from ``Folding`` or a fused model file).
    public init(folded: FoldedParameters, originalParameterCount: Int? = nil) throws {
        self.architecture = folded.architecture
        self.folded = folded
        self.network = try Network(folded)
        self.originalParameterCount = originalParameterCount
    }

    /// Recognises the architecture of a PyTorch state_dict, checks every key strictly, and folds it.
    ///
    /// - Parameter tensors: the state_dict's tensors in file order, `module.` prefixes removed.
    public convenience init(stateDict tensors: [(name: String, tensor: RawTensor)]) throws {
        var byName: [String: RawTensor] = [:]
        for (name, tensor) in tensors { byName[name] = tensor }
        let architecture = try Architecture.recognise(keys: Set(byName.keys), shapeOf: { byName[$0]?.shape })
        var raw = RawWeights(order: tensors.map(\.name), tensors: byName)
        let buffers = [".running_mean", ".running_var", ".num_batches_tracked"]
        let parameters = tensors.filter { t in !buffers.contains { t.name.hasSuffix($0) } }
            .reduce(0) { $0 + $1.tensor.shape.reduce(1, *) }
        try self.init(folded: try Folding.fold(architecture, &raw), originalParameterCount: parameters)
    }

    /// Whether the model outputs class logits (LFNSB, DDAMNet) rather than an embedding (LFN, MFN).
    public var isClassifier: Bool { architecture.classCount != nil }
    /// Logit count of a classifier, or the embedding width.
    public var outputWidth: Int { network.outputWidth }
    /// Channels of the backbone's 7x7 feature map.
    public var featureChannels: Int { network.featureChannels }
    /// The expected input: `[N, 3, 112, 112]`, normalised with the ImageNet mean and std.
    public static let inputShape = [3, Network.inputSize, Network.inputSize]

    /// Buffers for running batches of up to `batch` images on `threads` threads.
    public func makeSession(batch: Int, threads: Int = 1) -> InferenceSession {
        InferenceSession(model: self, batch: batch, threads: threads)
    }

    /// Runs a batch `[N, 3, 112, 112]` (or one image `[3, 112, 112]`) and returns every output.
    /// Convenient but allocating; steady-state callers reuse an ``InferenceSession``.
    public func predict(_ input: Tensor) throws -> Prediction {
        let batch = input.shape.count == 4 ? input.shape[0] : 1
        let session = makeSession(batch: max(batch, 1))
        return try session.predict(input)
    }

    /// Runs `input` and reports each stage's activation (NCHW, per forward pass of at most
    /// ``InferenceSession/microBatch`` images) under the PyTorch module names
    /// of the stage (`features.0` ... `features.8`, then the head's), for debugging.
    public func traceStages(_ input: Tensor, _ observe: (String, Tensor) -> Void) throws -> Prediction {
        let session = makeSession(batch: max(input.shape.count == 4 ? input.shape[0] : 1, 1))
        return try withoutActuallyEscaping(observe) { try session.predict(input, observe: $0) }
    }
}

/// Everything one forward pass gives, for a batch of N.
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

/// Buffers for one model, a maximum batch size and a thread count, planned and allocated once.
///
/// With one thread, ``run(nchw:batch:)`` allocates nothing. With several, a batch is split
/// into one chunk per thread, each run through its own workspace with single-threaded BLAS; a
/// single image uses multi-threaded BLAS instead. Not thread-safe: use one session per thread.
public final class InferenceSession {
    public let model: FERModel
    /// Largest batch this session runs.
    public let capacity: Int
    /// Threads a run uses.
    public let threads: Int
    let workers: [Workspace]
    private let results: Workspace.Results
    private var lastBatch = 0

    /// Images one workspace runs per forward pass. Larger batches are run as several such passes:
    /// activations of a few images stay in cache, and measured throughput is flat from 1 to 32.
    static let microBatch = 4

    init(model: FERModel, batch: Int, threads: Int) {
        precondition(batch >= 1, "batch size must be at least 1")
        precondition(threads >= 1, "thread count must be at least 1")
        self.model = model
        self.capacity = batch
        self.threads = threads
        let network = model.network
        let resultCounts = [network.outputWidth, network.outputWidth, network.featureChannels * 49, network.featureChannels]
        let buffers = resultCounts.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * batch) }
        for (p, n) in zip(buffers, resultCounts) { p.initialize(repeating: 0, count: n * batch) }
        let results = Workspace.Results(outputs: buffers[0], probabilities: buffers[1], featureMap: buffers[2], pooledFeatures: buffers[3])
        self.results = results
        let micro = min((batch + threads - 1) / threads, InferenceSession.microBatch)
        workers = (0..<min(threads, batch)).map { _ in Workspace(network: network, batch: micro, results: results) }
    }

    deinit {
        for p in [results.outputs, results.probabilities, results.featureMap, results.pooledFeatures] { p.deallocate() }
    }

    /// Per-stage timing of every run while set (the first workspace's passes when several threads run).
    public var profile: StageProfile? {
        get { workers[0].profile }
        set { workers[0].profile = newValue }
    }

    /// Bytes of activation memory this session holds.
    public var workspaceBytes: Int { workers.reduce(0) { $0 + $1.byteCount } }

    /// Runs `batch` images given as NCHW floats (`batch * 3 * 112 * 112` values), writing the
    /// results into this session's buffers (see ``outputs``, ``probabilities``).
    public func run(nchw input: UnsafeBufferPointer<Float>, batch: Int) throws {
        let size = Network.inputSize
        guard batch >= 1, batch <= capacity, input.count == batch * 3 * size * size else {
            throw EngineError.inputShape(expected: "[1...\(capacity), 3, \(size), \(size)]", got: [input.count])
        }
        run(input.baseAddress!, batch: batch, observe: nil)
    }

    private func run(_ input: UnsafePointer<Float>, batch: Int, observe: StageObserver?) {
        let plane = 3 * Network.inputSize * Network.inputSize
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
                worker.bind(results, offset: start)
                stage(input + start * plane, into: worker)
                model.network.forward(worker, observe: observe)
                start += worker.active
            }
        }
        if used == 1 {
            BLASThreads.set(threads)
            runWorker(0)
        } else {
            BLASThreads.set(1)
            // Each iteration touches only its own workspace and its own rows of the results.
            let job = UncheckedSendable(runWorker)
            DispatchQueue.concurrentPerform(iterations: used) { job.value($0) }
        }
    }

    /// Copies NCHW input into a workspace's NHWC input buffer.
    private func stage(_ input: UnsafePointer<Float>, into worker: Workspace) {
        let plane = Network.inputSize * Network.inputSize
        for b in 0..<worker.active {
            let image = input + b * 3 * plane
            let out = worker.input + b * 3 * plane
            for p in 0..<plane {
                out[3 * p] = image[p]
                out[3 * p + 1] = image[plane + p]
                out[3 * p + 2] = image[2 * plane + p]
            }
        }
    }

    /// The outputs of the last run, `batch x outputWidth` values (logits or embeddings).
    public var outputs: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: results.outputs, count: lastBatch * model.outputWidth)
    }

    /// Softmax probabilities of the last run (classifiers; empty for embedders).
    public var probabilities: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: results.probabilities, count: model.isClassifier ? lastBatch * model.outputWidth : 0)
    }

    /// Runs `input` (`[N, 3, 112, 112]` or `[3, 112, 112]`) and copies out every output.
    public func predict(_ input: Tensor) throws -> Prediction {
        try predict(input, observe: nil)
    }

    func predict(_ input: Tensor, observe: StageObserver?) throws -> Prediction {
        let size = Network.inputSize
        let shape = input.shape.count == 3 ? [1] + input.shape : input.shape
        guard shape.count == 4, shape[1] == 3, shape[2] == size, shape[3] == size, shape[0] >= 1, shape[0] <= capacity else {
            throw EngineError.inputShape(expected: "[N, 3, \(size), \(size)] with 1 <= N <= \(capacity)", got: input.shape)
        }
        input.data.withUnsafeBufferPointer { run($0.baseAddress!, batch: shape[0], observe: observe) }
        let n = lastBatch, width = model.outputWidth, c = model.featureChannels
        func tensor(_ p: UnsafeMutablePointer<Float>, _ shape: [Int]) -> Tensor {
            Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: p, count: shape.reduce(1, *))))
        }
        return Prediction(
            outputs: tensor(results.outputs, [n, width]),
            probabilities: model.isClassifier ? tensor(results.probabilities, [n, width]) : nil,
            featureMap: tensor(results.featureMap, [n, c, 7, 7]),
            pooledFeatures: tensor(results.pooledFeatures, [n, c]))
    }
}

/// Hands a value to concurrently running code whose isolation the compiler cannot see.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
