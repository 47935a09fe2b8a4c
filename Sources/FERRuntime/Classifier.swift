@_exported import FERCheckpoint
@_exported import FEREngine
@_exported import FERImage
@_exported import FERTensor
import Foundation

/// The result for one input.
public struct Classification: Sendable, Equatable {
    /// Top label (classifiers), from the classifier's label names.
    public let label: String?
    /// Index of the top class (classifiers).
    public let index: Int?
    /// Probability of the top class (classifiers).
    public let probability: Float?
    /// Softmax over the logits (classifiers; empty for embedders).
    public let probabilities: [Float]
    /// Raw logits (classifiers; empty for embedders).
    public let logits: [Float]
    /// The L2-normalised embedding (LFN and MFN models).
    public let embedding: [Float]?

    /// Class indices from most to least probable, at most `k` of them (classifiers).
    public func top(_ k: Int) -> [Int] {
        Array(probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }.prefix(k))
    }

    /// The JSON fields `fer-infer --json` and `fer-serve` report for one input: `label`, `index`,
    /// `probability`, `labels`, `logits` and `probabilities` for a classifier, `embedding` otherwise.
    public func jsonFields(labels: [String]?) -> [String: Any] {
        guard let label, let index, let probability else { return ["embedding": embedding ?? []] }
        return ["label": label, "index": index, "probability": probability, "labels": labels ?? [],
                "logits": logits, "probabilities": probabilities]
    }
}

/// A loaded model ready to classify decoded pixels, encoded PNG/JPEG bytes or normalised
/// tensors, from any number of threads at once.
///
/// The model is immutable and shared; each call borrows a preallocated ``InferenceSession``
/// from a pool (or makes one when all are busy) and returns it afterwards, so concurrent calls
/// never share scratch memory. At most ``maxIdleSessions`` sessions are kept between calls; the
/// ones a burst of concurrent callers made beyond that are freed when they are given back.
///
/// Inputs with a NaN or infinite value are refused before inference
/// (``ClassifierError/nonFiniteInput(sample:channel:y:x:)``), and so are results whose logits,
/// probabilities or embedding come out non-finite (``ClassifierError/nonFiniteOutput(sample:)``,
/// finite inputs too large for the network): no result holds a NaN. The `classifyEach` calls give
/// one result per sample, so a bad sample does not cost the others theirs.
///
/// ```swift
/// let classifier = try FERClassifier(contentsOf: "weights/lfnsb7-seeded.pth")
/// let result = try classifier.classify(encoded: Array(pngData))
/// print(result.label!, result.probability!)
/// ```
public final class FERClassifier: Sendable {
    /// The model every call runs.
    public let model: FERModel
    /// Label names in class order (classifiers), nil for embedders.
    public let labels: [String]?
    /// Images per forward pass; larger requests run as several passes.
    public let maxBatch: Int
    /// Threads each call runs on.
    public let threads: Int
    /// Sessions kept for reuse between calls; sessions given back beyond these are freed.
    public let maxIdleSessions: Int
    private let sessions: SessionPool

    /// The default ``maxIdleSessions``: as many sessions as can run at once on this machine's cores
    /// with `threads` threads each, and at least 2. More concurrent callers still get a session
    /// each, made for the call and freed after it.
    public static func defaultMaxIdleSessions(threads: Int) -> Int {
        max(2, ProcessInfo.processInfo.activeProcessorCount / max(1, threads))
    }

    /// Wraps `model`. `labels` defaults to RAF-DB for 7 classes and AffectNet-8 for 8; other class
    /// counts get `class N`. Throws ``ClassifierError/labelCount(expected:got:)`` on a mismatch.
    /// `maxIdleSessions` (default ``defaultMaxIdleSessions(threads:)``) bounds the sessions kept
    /// between calls; 0 keeps none.
    public init(model: FERModel, labels: [String]? = nil, maxBatch: Int = 8, threads: Int = 1,
                maxIdleSessions: Int? = nil) throws {
        precondition(maxBatch >= 1 && threads >= 1, "maxBatch and threads must be at least 1")
        precondition((maxIdleSessions ?? 0) >= 0, "maxIdleSessions must not be negative")
        guard model.outputWidth > 0 else { throw ClassifierError.notAClassifier(model.architecture.description) }
        self.model = model
        self.maxBatch = maxBatch
        self.threads = threads
        self.maxIdleSessions = maxIdleSessions ?? Self.defaultMaxIdleSessions(threads: threads)
        if let classes = model.architecture.classCount {
            let names = labels ?? LabelSet.names(forClasses: classes)
            guard names.count == classes else { throw ClassifierError.labelCount(expected: classes, got: names.count) }
            self.labels = names
        } else {
            self.labels = nil
        }
        sessions = SessionPool(model: model, batch: maxBatch, threads: threads, maxIdle: self.maxIdleSessions)
    }

    /// Loads a model file (any checkpoint form the importer reads, or a fused `.safetensors`).
    public convenience init(contentsOf path: String, labels: [String]? = nil, maxBatch: Int = 8,
                            maxIdleSessions: Int? = nil) throws {
        try self.init(model: try FERModel(contentsOf: path), labels: labels, maxBatch: maxBatch,
                      maxIdleSessions: maxIdleSessions)
    }

    /// Loads a model from the bytes of a model file held in memory.
    public convenience init(bytes: [UInt8], labels: [String]? = nil, maxBatch: Int = 8,
                            maxIdleSessions: Int? = nil) throws {
        try self.init(model: try FERModel(checkpoint: try Checkpoint.load(bytes: bytes)), labels: labels,
                      maxBatch: maxBatch, maxIdleSessions: maxIdleSessions)
    }

    /// A classifier over the same model and labels with room for `maxBatch` images per pass (on
    /// `threads` threads, default this one's) and a session pool of its own: for the faces of one
    /// photo, classified together, beside a classifier made for one image at a time.
    public func sharingModel(maxBatch: Int, threads: Int? = nil) throws -> FERClassifier {
        try FERClassifier(model: model, labels: labels, maxBatch: maxBatch, threads: threads ?? self.threads)
    }

    /// Sessions waiting in the pool now (at most ``maxIdleSessions``).
    public var idleSessionCount: Int { sessions.idleCount }

    /// Sessions made so far: one per call that found no idle session.
    public var sessionsCreated: Int { sessions.createdCount }

    /// Classifies one decoded RGB image (any size; resized as the authors' evaluation does).
    public func classify(_ image: RGBImage) throws -> Classification {
        try classify([image])[0]
    }

    /// Classifies decoded RGB images, batched. Throws the first sample's error, if any.
    public func classify(_ images: [RGBImage]) throws -> [Classification] {
        guard !images.isEmpty else { return [] }
        return try run(Preprocessing.batchChannelsLast(images).data, count: images.count, channelsLast: true)
            .map { try $0.get() }
    }

    /// Decodes PNG or JPEG bytes (throws ``ImageError`` for anything else) and classifies them.
    public func classify(encoded bytes: [UInt8], options: ImageDecodingOptions = .default) throws -> Classification {
        try classify(ImageDecoder.decode(bytes: bytes, options: options).image)
    }

    /// Classifies normalised inputs `[N, 3, 112, 112]` or `[3, 112, 112]` (PyTorch's layout).
    /// Throws the first sample's ``ClassifierError``, if any (``classifyEach(tensor:)`` gives the others).
    public func classify(tensor: Tensor) throws -> [Classification] {
        try classifyEach(tensor: tensor).map { try $0.get() }
    }

    /// Classifies normalised channel-last inputs `[N, 112, 112, 3]` or `[112, 112, 3]` (the layout
    /// ``Preprocessing/modelInputChannelsLast(_:)`` gives), without a transposition.
    /// Throws the first sample's ``ClassifierError``, if any.
    public func classify(channelsLast tensor: Tensor) throws -> [Classification] {
        try classifyEach(channelsLast: tensor).map { try $0.get() }
    }

    /// One result per sample of `[N, 3, 112, 112]` or `[3, 112, 112]`: a classification, or the
    /// ``ClassifierError`` that sample alone met. Throws only for a tensor of the wrong shape.
    public func classifyEach(tensor: Tensor) throws -> [Result<Classification, ClassifierError>] {
        guard let count = ModelInput.batchCount(of: tensor.shape) else {
            throw EngineError.inputShape(expected: ModelInput.describe(), got: tensor.shape)
        }
        return try run(tensor.data, count: count, channelsLast: false)
    }

    /// One result per sample of `[N, 112, 112, 3]` or `[112, 112, 3]` (see ``classifyEach(tensor:)``).
    public func classifyEach(channelsLast tensor: Tensor) throws -> [Result<Classification, ClassifierError>] {
        guard let count = ModelInput.batchCount(of: tensor.shape, channelsLast: true) else {
            throw EngineError.inputShape(expected: ModelInput.describe(channelsLast: true), got: tensor.shape)
        }
        return try run(tensor.data, count: count, channelsLast: true)
    }

    /// `input` holds `count` samples of `plane` values each (NCHW or NHWC). Samples with a
    /// non-finite value are refused without running; the others run in passes of `maxBatch`.
    private func run(_ input: [Float], count: Int, channelsLast: Bool) throws -> [Result<Classification, ClassifierError>] {
        let plane = ModelInput.shape.reduce(1, *)
        var results = [Result<Classification, ClassifierError>?](repeating: nil, count: count)
        var runnable: [Int] = []  // sample indices, in order
        runnable.reserveCapacity(count)
        input.withUnsafeBufferPointer { all in
            for sample in 0..<count {
                let values = UnsafeBufferPointer(rebasing: all[sample * plane..<(sample + 1) * plane])
                if let bad = Self.firstNonFinite(values) {
                    let (channel, y, x) = Self.position(of: bad, channelsLast: channelsLast)
                    results[sample] = .failure(.nonFiniteInput(sample: sample, channel: channel, y: y, x: x))
                } else {
                    runnable.append(sample)
                }
            }
        }
        guard !runnable.isEmpty else { return results.map { $0! } }
        // All samples run: straight from `input`. Otherwise the runnable ones are packed first.
        let source: [Float]
        if runnable.count == count {
            source = input
        } else {
            var packed = [Float]()
            packed.reserveCapacity(runnable.count * plane)
            for sample in runnable { packed += input[sample * plane..<(sample + 1) * plane] }
            source = packed
        }
        try sessions.withSession { session in try run(session, source, channelsLast: channelsLast, runnable: runnable, into: &results) }
        return results.map { $0! }
    }

    /// Runs the `runnable` samples packed in `source` through `session` in passes of ``maxBatch``.
    private func run(_ session: InferenceSession, _ source: [Float], channelsLast: Bool, runnable: [Int],
                     into results: inout [Result<Classification, ClassifierError>?]) throws {
        let plane = ModelInput.shape.reduce(1, *)
        let width = model.outputWidth
        var start = 0
        while start < runnable.count {
            let n = min(maxBatch, runnable.count - start)
            try source.withUnsafeBufferPointer {
                let slice = UnsafeBufferPointer(rebasing: $0[start * plane..<(start + n) * plane])
                if channelsLast { try session.run(nhwc: slice, batch: n) } else { try session.run(nchw: slice, batch: n) }
            }
            let outputs = session.outputs, probabilities = session.probabilities
            for i in 0..<n {
                let sample = runnable[start + i]
                let out = Array(outputs[i * width..<(i + 1) * width])
                let probs = labels == nil ? [] : Array(probabilities[i * width..<(i + 1) * width])
                guard out.allSatisfy(\.isFinite), probs.allSatisfy(\.isFinite) else {
                    results[sample] = .failure(.nonFiniteOutput(sample: sample))
                    continue
                }
                if let labels {
                    let top = probs.indices.max { probs[$0] < probs[$1] }!
                    results[sample] = .success(Classification(label: labels[top], index: top, probability: probs[top],
                                                              probabilities: probs, logits: out, embedding: nil))
                } else {
                    results[sample] = .success(Classification(label: nil, index: nil, probability: nil,
                                                              probabilities: [], logits: [], embedding: out))
                }
            }
            start += n
        }
    }

    /// Index of the first NaN or infinity in `values`, or nil.
    private static func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        values.firstIndex { !$0.isFinite }
    }

    /// Channel, row and column of value `index` of one sample in its layout.
    private static func position(of index: Int, channelsLast: Bool) -> (channel: Int, y: Int, x: Int) {
        let size = ModelInput.size, channels = ModelInput.channels
        if channelsLast {
            let pixel = index / channels
            return (index % channels, pixel / size, pixel % size)
        }
        let pixel = index % (size * size)
        return (index / (size * size), pixel / size, pixel % size)
    }
}

/// Why a classifier could not be made, or why it refused one sample.
public enum ClassifierError: Error, Equatable, CustomStringConvertible {
    /// The label list does not have one name per class.
    case labelCount(expected: Int, got: Int)
    /// No model was given and the default one was not found.
    case noModel
    /// No detector was given and the default one was not found.
    case noDetector
    /// The model gives neither logits nor an embedding (the face detector).
    case notAClassifier(String)
    /// Input sample `sample` (0-based, in the call) holds a NaN or infinity, the first at
    /// `channel`, row `y`, column `x`. Refused before inference.
    case nonFiniteInput(sample: Int, channel: Int, y: Int, x: Int)
    /// The logits, probabilities or embedding of input sample `sample` came out NaN or infinite:
    /// its (finite) values are too large for the network.
    case nonFiniteOutput(sample: Int)

    public var description: String {
        switch self {
        case .nonFiniteInput(let sample, _, _, _), .nonFiniteOutput(let sample):
            return "input sample \(sample): \(problem)"
        default:
            return problem
        }
    }

    /// The description without the sample number, for callers that name the sample themselves
    /// (`fer-infer` names the file and its sample).
    public var problem: String {
        switch self {
        case .labelCount(let expected, let got): return "\(got) label names for a model with \(expected) classes"
        case .notAClassifier(let architecture): return "\(architecture) is a face detector, not a classifier or embedder"
        case .noModel: return "no model given and \(DefaultModel.relativePath) not found (pass --model FILE or set FER_MODEL)"
        case .noDetector:
            return "no detector given and \(DefaultModel.detectorRelativePath) not found (pass --detector FILE or set FER_DETECTOR)"
        case .nonFiniteInput(_, let channel, let y, let x):
            return "input value at channel \(channel), row \(y), column \(x) is NaN or infinite; inputs must be finite normalised values"
        case .nonFiniteOutput:
            return "the model's outputs are NaN or infinite: the input values are too large for the network (is it normalised?)"
        }
    }
}
