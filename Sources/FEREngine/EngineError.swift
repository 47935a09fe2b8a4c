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
    /// An input tensor of the wrong shape.
    case inputShape(expected: String, got: [Int])

    public var description: String {
        switch self {
        case .unrecognisedArchitecture(let keys):
            return "unrecognised architecture: the keys match none of LFNSB, LFN, MFN or DDAMNet (first keys: \(keys.joined(separator: ", ")))"
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
        case .inputShape(let expected, let got):
            return "input has shape \(got), expected \(expected)"
        }
    }
}
