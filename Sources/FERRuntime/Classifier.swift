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
/// never share scratch memory.
///
/// ```swift
/// let classifier = try FERClassifier(contentsOf: "weights/lfnsb7-seeded.pth")
/// let result = try classifier.classify(encoded: Array(pngData))
/// print(result.label!, result.probability!)
/// ```
public final class FERClassifier: @unchecked Sendable {
    // Safety of @unchecked Sendable: `idle` is only touched under `lock`; everything else is immutable.
    /// The model every call runs.
    public let model: FERModel
    /// Label names in class order (classifiers), nil for embedders.
    public let labels: [String]?
    /// Images per forward pass; larger requests run as several passes.
    public let maxBatch: Int
    /// Threads each call runs on.
    public let threads: Int
    private let lock = NSLock()
    private var idle: [InferenceSession] = []

    /// Wraps `model`. `labels` defaults to RAF-DB for 7 classes and AffectNet-8 for 8; other class
    /// counts get `class N`. Throws ``ClassifierError/labelCount(expected:got:)`` on a mismatch.
    public init(model: FERModel, labels: [String]? = nil, maxBatch: Int = 8, threads: Int = 1) throws {
        precondition(maxBatch >= 1 && threads >= 1, "maxBatch and threads must be at least 1")
        guard model.outputWidth > 0 else { throw ClassifierError.notAClassifier(model.architecture.description) }
        self.model = model
        self.maxBatch = maxBatch
        self.threads = threads
        if let classes = model.architecture.classCount {
            let names = labels ?? LabelSet.names(forClasses: classes)
            guard names.count == classes else { throw ClassifierError.labelCount(expected: classes, got: names.count) }
            self.labels = names
        } else {
            self.labels = nil
        }
    }

    /// Loads a model file (any checkpoint form the importer reads, or a fused `.safetensors`).
    public convenience init(contentsOf path: String, labels: [String]? = nil, maxBatch: Int = 8) throws {
        try self.init(model: try FERModel(contentsOf: path), labels: labels, maxBatch: maxBatch)
    }

    /// Loads a model from the bytes of a model file held in memory.
    public convenience init(bytes: [UInt8], labels: [String]? = nil, maxBatch: Int = 8) throws {
        try self.init(model: try FERModel(checkpoint: try Checkpoint.load(bytes: bytes)), labels: labels, maxBatch: maxBatch)
    }

    /// Classifies one decoded RGB image (any size; resized as the authors' evaluation does).
    public func classify(_ image: RGBImage) throws -> Classification {
        try classify([image])[0]
    }

    /// Classifies decoded RGB images, batched.
    public func classify(_ images: [RGBImage]) throws -> [Classification] {
        guard !images.isEmpty else { return [] }
        return try run(Preprocessing.batchChannelsLast(images).data, count: images.count, channelsLast: true)
    }

    /// Decodes PNG or JPEG bytes (throws ``ImageError`` for anything else) and classifies them.
    public func classify(encoded bytes: [UInt8], options: ImageDecodingOptions = .default) throws -> Classification {
        try classify(ImageDecoder.decode(bytes: bytes, options: options).image)
    }

    /// Classifies normalised inputs `[N, 3, 112, 112]` or `[3, 112, 112]` (PyTorch's layout).
    public func classify(tensor: Tensor) throws -> [Classification] {
        guard let count = ModelInput.batchCount(of: tensor.shape) else {
            throw EngineError.inputShape(expected: ModelInput.describe(), got: tensor.shape)
        }
        return try run(tensor.data, count: count, channelsLast: false)
    }

    /// Classifies normalised channel-last inputs `[N, 112, 112, 3]` or `[112, 112, 3]` (the layout
    /// ``Preprocessing/modelInputChannelsLast(_:)`` gives), without a transposition.
    public func classify(channelsLast tensor: Tensor) throws -> [Classification] {
        guard let count = ModelInput.batchCount(of: tensor.shape, channelsLast: true) else {
            throw EngineError.inputShape(expected: ModelInput.describe(channelsLast: true), got: tensor.shape)
        }
        return try run(tensor.data, count: count, channelsLast: true)
    }

    private func run(_ input: [Float], count: Int, channelsLast: Bool) throws -> [Classification] {
        let plane = ModelInput.shape.reduce(1, *)
        let session = borrow()
        defer { giveBack(session) }
        var results: [Classification] = []
        results.reserveCapacity(count)
        var start = 0
        while start < count {
            let n = min(maxBatch, count - start)
            try input.withUnsafeBufferPointer {
                let slice = UnsafeBufferPointer(rebasing: $0[start * plane..<(start + n) * plane])
                if channelsLast { try session.run(nhwc: slice, batch: n) } else { try session.run(nchw: slice, batch: n) }
            }
            let width = model.outputWidth
            let outputs = session.outputs, probabilities = session.probabilities
            for i in 0..<n {
                let out = Array(outputs[i * width..<(i + 1) * width])
                if let labels {
                    let probs = Array(probabilities[i * width..<(i + 1) * width])
                    let top = probs.indices.max { probs[$0] < probs[$1] }!
                    results.append(Classification(label: labels[top], index: top, probability: probs[top],
                                                  probabilities: probs, logits: out, embedding: nil))
                } else {
                    results.append(Classification(label: nil, index: nil, probability: nil,
                                                  probabilities: [], logits: [], embedding: out))
                }
            }
            start += n
        }
        return results
    }

    private func borrow() -> InferenceSession {
        lock.lock()
        let session = idle.popLast()
        lock.unlock()
        return session ?? model.makeSession(batch: maxBatch, threads: threads)
    }

    private func giveBack(_ session: InferenceSession) {
        lock.lock()
        idle.append(session)
        lock.unlock()
    }
}

/// Why a classifier could not be made.
public enum ClassifierError: Error, Equatable, CustomStringConvertible {
    /// The label list does not have one name per class.
    case labelCount(expected: Int, got: Int)
    /// No model was given and the default one was not found.
    case noModel
    /// The model gives neither logits nor an embedding (the face detector).
    case notAClassifier(String)

    public var description: String {
        switch self {
        case .labelCount(let expected, let got): return "\(got) label names for a model with \(expected) classes"
        case .notAClassifier(let architecture): return "\(architecture) is a face detector, not a classifier or embedder"
        case .noModel: return "no model given and \(DefaultModel.relativePath) not found (pass --model FILE or set FER_MODEL)"
        }
    }
}
