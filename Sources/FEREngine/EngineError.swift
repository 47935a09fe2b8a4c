/// Why a model could not be built or run.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint's keys match none of the supported architectures.
    case unrecognisedArchitecture(sampleKeys: [String])
    /// The checkpoint does not fit the recognised architecture: every problem, listed.
    case weightMismatch(architecture: String, missing: [String], unexpected: [String], shapes: [String])
    /// A tensor that the architecture needs holds values it cannot use (for example integers).
    case unusableTensor(name: String, reason: String)
    /// A fused model file whose metadata or tensors are not what this runtime writes.
    case invalidFusedModel(String)
    /// A plan whose operations do not fit together (a hostile or damaged fused file, or an input
    /// size the network cannot take): the operation's index and stage, and why.
    case invalidPlan(operation: Int, stage: String, reason: String)
    /// A weight whose shape is not what the operation using it needs.
    case planShape(operation: Int, stage: String, key: String, expected: [Int], actual: [Int])
    /// An input tensor of the wrong shape.
    case inputShape(expected: String, got: [Int])

    public var description: String {
        switch self {
        case .unrecognisedArchitecture(let keys):
            return "unrecognised architecture: the keys match none of LFNSB, LFN, MFN, DDAMNet or RetinaFace (first keys: \(keys.joined(separator: ", ")))"
        case .weightMismatch(let architecture, let missing, let unexpected, let shapes):
            var lines = ["checkpoint does not fit \(architecture):"]
            func list(_ title: String, _ items: [String]) {
                guard !items.isEmpty else { return }
                let shown = items.prefix(20).map { "  \($0)" }
                lines.append("\(title) (\(items.count)):")
                lines += shown
                if items.count > 20 { lines.append("  ... and \(items.count - 20) more") }
            }
            list("missing keys", missing)
            list("unexpected keys", unexpected)
            list("shape mismatches", shapes)
            return lines.joined(separator: "\n")
        case .unusableTensor(let name, let reason):
            return "tensor '\(name)': \(reason)"
        case .invalidFusedModel(let reason):
            return "invalid fused model file: \(reason)"
        case .invalidPlan(let operation, let stage, let reason):
            return "operation \(operation) (\(stage.isEmpty ? "?" : stage)): \(reason)"
        case .planShape(let operation, let stage, let key, let expected, let actual):
            return "operation \(operation) (\(stage)): weight '\(key)' has shape \(actual), expected \(expected)"
        case .inputShape(let expected, let got):
            return "input has shape \(got), expected \(expected)"
        }
    }
}
