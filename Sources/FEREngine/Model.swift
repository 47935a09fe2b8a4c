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

    /// Builds a model from folded parameters (from ``Folding`` or a fused model file).
    public init(folded: FoldedParameters) throws {
        self.architecture = folded.architecture
        self.folded = folded
        self.network = try Network(folded)
    }

    /// Recognises the architecture of a PyTorch state_dict, checks every key strictly, and folds it.
    ///
    /// - Parameter tensors: the state_dict's tensors in file order, `module.` prefixes removed.
    public convenience init(stateDict tensors: [(name: String, tensor: RawTensor)]) throws {
        var byName: [String: RawTensor] = [:]
        for (name, tensor) in tensors { byName[name] = tensor }
        let architecture = try Architecture.recognise(keys: Set(byName.keys), shapeOf: { byName[$0]?.shape })
        var raw = RawWeights(order: tensors.map(\.name), tensors: byName)
        try self.init(folded: try Folding.fold(architecture, &raw))
    }

    /// Whether the model outputs class logits (LFNSB, DDAMNet) rather than an embedding (LFN, MFN).
    public var isClassifier: Bool { architecture.classCount != nil }
    /// Logit count of a classifier, or the embedding width.
    public var outputWidth: Int { network.outputWidth }
    /// Channels of the backbone's 7x7 feature map.
    public var featureChannels: Int { network.featureChannels }
    /// The expected input: `[N, 3, 112, 112]`, normalised with the ImageNet mean and std.
    public static let inputShape = [3, Network.inputSize, Network.inputSize]

    /// Buffers for running batches of up to `batch` images.
    public func makeSession(batch: Int) -> InferenceSession { InferenceSession(model: self, batch: batch) }

    /// Runs a batch `[N, 3, 112, 112]` (or one image `[3, 112, 112]`) and returns every output.
    /// Convenient but allocating; steady-state callers reuse an ``InferenceSession``.
    public func predict(_ input: Tensor) throws -> Prediction {
        let batch = input.shape.count == 4 ? input.shape[0] : 1
        let session = makeSession(batch: max(batch, 1))
        return try session.predict(input)
    }

    /// Runs `input` and reports each stage's activation (NCHW) under the PyTorch module names
    /// of the stage (`features.0` ... `features.8`, then the head's), for debugging.
    public func traceStages(_ input: Tensor, _ observe: (String, Tensor) -> Void) throws -> Prediction {
        let session = makeSession(batch: max(input.shape.count == 4 ? input.shape[0] : 1, 1))
        try session.load(input)
        withoutActuallyEscaping(observe) { network.forward(session.workspace, observe: $0) }
        return session.collect()
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

/// Per-thread buffers for one model and a maximum batch size, planned and allocated once.
/// ``run(nchw:batch:)`` allocates nothing. Not thread-safe: use one session per thread.
public final class InferenceSession {
    public let model: FERModel
    /// Largest batch this session runs.
    public let capacity: Int
    let workspace: Workspace
    private var lastBatch = 0

    init(model: FERModel, batch: Int) {
        precondition(batch >= 1, "batch size must be at least 1")
        self.model = model
        self.capacity = batch
        self.workspace = Workspace(network: model.network, batch: batch)
    }

    /// Bytes of activation memory this session holds.
    public var workspaceBytes: Int { workspace.byteCount }

    /// Runs `batch` images given as NCHW floats (`batch * 3 * 112 * 112` values), writing the
    /// results into this session's buffers (see ``outputs``, ``probabilities``).
    public func run(nchw input: UnsafeBufferPointer<Float>, batch: Int) throws {
        let size = Network.inputSize
        guard batch >= 1, batch <= capacity, input.count == batch * 3 * size * size else {
            throw EngineError.inputShape(expected: "[1...\(capacity), 3, \(size), \(size)]", got: [input.count])
        }
        stage(input.baseAddress!, batch: batch)
        model.network.forward(workspace)
    }

    /// Copies NCHW input into the workspace's NHWC input buffer and sets the batch size.
    private func stage(_ input: UnsafePointer<Float>, batch: Int) {
        let plane = Network.inputSize * Network.inputSize
        for b in 0..<batch {
            let image = input + b * 3 * plane
            let out = workspace.input + b * 3 * plane
            for p in 0..<plane {
                out[3 * p] = image[p]
                out[3 * p + 1] = image[plane + p]
                out[3 * p + 2] = image[2 * plane + p]
            }
        }
        workspace.active = batch
        lastBatch = batch
    }

    /// The outputs of the last run, `batch x outputWidth` values (logits or embeddings).
    public var outputs: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: workspace.outputs, count: lastBatch * model.outputWidth)
    }

    /// Softmax probabilities of the last run (classifiers; empty for embedders).
    public var probabilities: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: workspace.probabilities, count: model.isClassifier ? lastBatch * model.outputWidth : 0)
    }

    /// Runs `input` (`[N, 3, 112, 112]` or `[3, 112, 112]`) and copies out every output.
    public func predict(_ input: Tensor) throws -> Prediction {
        try load(input)
        model.network.forward(workspace)
        return collect()
    }

    func load(_ input: Tensor) throws {
        let size = Network.inputSize
        let shape = input.shape.count == 3 ? [1] + input.shape : input.shape
        guard shape.count == 4, shape[1] == 3, shape[2] == size, shape[3] == size, shape[0] >= 1, shape[0] <= capacity else {
            throw EngineError.inputShape(expected: "[N, 3, \(size), \(size)] with 1 <= N <= \(capacity)", got: input.shape)
        }
        input.data.withUnsafeBufferPointer { stage($0.baseAddress!, batch: shape[0]) }
    }

    func collect() -> Prediction {
        let n = lastBatch, width = model.outputWidth, c = model.featureChannels
        let outputs = Tensor(shape: [n, width], data: Array(UnsafeBufferPointer(start: workspace.outputs, count: n * width)))
        let probabilities = model.isClassifier
            ? Tensor(shape: [n, width], data: Array(UnsafeBufferPointer(start: workspace.probabilities, count: n * width))) : nil
        let featureMap = Tensor(shape: [n, c, 7, 7], data: Array(UnsafeBufferPointer(start: workspace.featureMap, count: n * c * 49)))
        let pooled = Tensor(shape: [n, c], data: Array(UnsafeBufferPointer(start: workspace.pooledFeatures, count: n * c)))
        return Prediction(outputs: outputs, probabilities: probabilities, featureMap: featureMap, pooledFeatures: pooled)
    }
}
