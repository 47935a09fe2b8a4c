import FERCheckpoint
import FERTensor
import Foundation

/// Fused model files: the folded, packed weights in safetensors, with metadata that names the
/// architecture, so the runtime skips recognition and folding.
///
/// Metadata keys: `format` = `fer-fused`, `format_version` = `2`, `architecture` (`lfnsb`, `lfn`,
/// `mfn`, `ddamnet`, `retinaface`), `classes`, `heads`, `labels` (comma-separated, classifiers
/// only), `parameters` (the PyTorch model's parameter count, for reports) and `graph` (the
/// ``ModelGraph`` as JSON: the file runs without any architecture-specific code).
public enum FusedModelFile {
    public static let formatName = "fer-fused"
    public static let formatVersion = "2"

    /// Writes `model`'s folded weights to `path`.
    public static func write(_ model: FERModel, to path: String, labels: [String]? = nil) throws {
        let folded = model.folded
        var metadata = ["format": formatName, "format_version": formatVersion, "architecture": folded.architecture.family]
        switch folded.architecture {
        case .lfnsb(let classes): metadata["classes"] = "\(classes)"
        case .ddamnet(let classes, let heads): metadata["classes"] = "\(classes)"; metadata["heads"] = "\(heads)"
        case .lfn, .mfn, .retinaFace: break
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        metadata["graph"] = String(decoding: try encoder.encode(model.graph), as: UTF8.self)
        if let labels { metadata["labels"] = labels.joined(separator: ",") }
        if let parameters = model.originalParameterCount { metadata["parameters"] = "\(parameters)" }
        let tensors = folded.names.map { name -> (name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) in
            let t = folded.tensor(name)!
            var bytes = [UInt8](); bytes.reserveCapacity(t.count * 4)
            for v in t.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
            return (name, .float32, t.shape, bytes)
        }
        try SafeTensors.write(tensors, metadata: metadata, to: path)
    }

    /// Reads folded parameters back from a fused file's checkpoint view.
    static func read(_ checkpoint: Checkpoint) throws -> (FoldedParameters, ModelGraph, parameters: Int?) {
        let meta = checkpoint.metadata
        guard meta["format_version"] == formatVersion else {
            throw EngineError.invalidFusedModel("format_version \(meta["format_version"] ?? "missing"), this runtime reads \(formatVersion)"
                                                + (meta["format_version"] == "1" ? " (export the checkpoint again)" : ""))
        }
        guard let json = meta["graph"] else { throw EngineError.invalidFusedModel("metadata 'graph' is missing") }
        let graph: ModelGraph
        do {
            graph = try JSONDecoder().decode(ModelGraph.self, from: Data(json.utf8))
        } catch {
            throw EngineError.invalidFusedModel("metadata 'graph' is not a model graph: \(error)")
        }
        func count(_ key: String) throws -> Int {
            guard let text = meta[key], let value = Int(text), value > 0, value < 100_000 else {
                throw EngineError.invalidFusedModel("metadata '\(key)' is \(meta[key].map { "'\($0)'" } ?? "missing")")
            }
            return value
        }
        let architecture: Architecture
        switch meta["architecture"] {
        case "lfnsb": architecture = .lfnsb(classes: try count("classes"))
        case "lfn": architecture = .lfn
        case "mfn": architecture = .mfn
        case "ddamnet": architecture = .ddamnet(classes: try count("classes"), heads: try count("heads"))
        case "retinaface": architecture = .retinaFace
        default: throw EngineError.invalidFusedModel("unknown architecture '\(meta["architecture"] ?? "missing")'")
        }
        var folded = FoldedParameters(architecture: architecture, capacity: checkpoint.tensors.reduce(0) { $0 + $1.count })
        for t in checkpoint.tensors {
            guard t.dtype == .float32 else { throw EngineError.invalidFusedModel("tensor '\(t.name)' is \(t.dtype), expected float32") }
            try folded.add(t.name, Tensor(shape: t.shape, data: try t.floats()))
        }
        return (folded, graph, meta["parameters"].flatMap { Int($0) })
    }
}

extension FERModel {
    /// Loads a model file: a PyTorch checkpoint in any form the importer reads, or a fused
    /// `.safetensors` file written by ``FusedModelFile/write(_:to:labels:)``.
    public convenience init(contentsOf path: String) throws {
        // The checkpoint (its mapped pages) is gone before the plan packs the weights: peak memory
        // holds the folded and packed weights, not the file's too.
        let (folded, graph, parameters) = try Self.parts(of: Checkpoint.load(path: path))
        try self.init(folded: folded, graph: graph, originalParameterCount: parameters)
    }

    /// Builds a model from an imported checkpoint (fused files included).
    public convenience init(checkpoint: Checkpoint) throws {
        let (folded, graph, parameters) = try Self.parts(of: checkpoint)
        try self.init(folded: folded, graph: graph, originalParameterCount: parameters)
    }

    /// The folded weights, graph and parameter count of a checkpoint (a PyTorch one, or a fused file).
    private static func parts(of checkpoint: Checkpoint) throws -> (FoldedParameters, ModelGraph, Int?) {
        if checkpoint.container == .safetensors, checkpoint.metadata["format"] == FusedModelFile.formatName {
            return try FusedModelFile.read(checkpoint)
        }
        let built = try build(stateDict: checkpoint.tensors.map { t in
            (t.name, RawTensor(shape: t.shape, values: { try t.floats() }))
        })
        return (built.folded, built.graph, built.parameters)
    }
}
