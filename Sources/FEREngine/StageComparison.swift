import FERTensor

/// Stage-by-stage comparison of a forward pass with reference activations (for example
/// PyTorch's, dumped by `tools/reference/make_fixtures.py`), naming the first stage that drifts.
public struct StageComparison: CustomStringConvertible {
    /// One compared stage: its name and largest |difference| relative to the largest |reference|.
    public struct Stage: Sendable {
        public let stage: String
        public let relativeError: Float
    }

    /// Stages compared, in forward order.
    public let compared: [Stage]
    /// Stages the forward pass produced but no reference was given for.
    public let skipped: [String]
    /// The first stage whose relative error passes the tolerance, if any.
    public let firstDrift: Stage?

    /// Runs `model` on `input`, comparing each stage's NCHW activation with `expected(name)`.
    /// A shape mismatch counts as drift (relative error infinity).
    public static func compare(
        _ model: FERModel, input: Tensor, tolerance: Float = 1e-4, expected: (String) -> Tensor?
    ) throws -> StageComparison {
        var compared: [Stage] = []
        var skipped: [String] = []
        _ = try model.traceStages(input) { name, activation in
            guard let reference = expected(name) else { skipped.append(name); return }
            guard reference.count == activation.count else {
                compared.append(Stage(stage: name, relativeError: .infinity))
                return
            }
            var worst: Float = 0, scale: Float = 1e-12
            for i in 0..<reference.count {
                worst = max(worst, abs(activation.data[i] - reference.data[i]))
                scale = max(scale, abs(reference.data[i]))
            }
            compared.append(Stage(stage: name, relativeError: worst / scale))
        }
        return StageComparison(compared: compared, skipped: skipped,
                               firstDrift: compared.first { !($0.relativeError <= tolerance) })
    }

    public var description: String {
        var lines = compared.map { "\($0.stage): relative error \($0.relativeError)" }
        if !skipped.isEmpty { lines.append("no reference for: \(skipped.joined(separator: ", "))") }
        lines.append(firstDrift.map { "first drifting stage: \($0.stage)" } ?? "no stage drifts")
        return lines.joined(separator: "\n")
    }
}
