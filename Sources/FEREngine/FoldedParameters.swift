import FERTensor

/// The folded, packed weights of a model: what the forward pass reads, and what a fused model
/// file stores. Names are the runtime's own (`features.3.2.expand.weight`, `sb.reduce.bias`, ...)
/// and layouts are the kernels' (see ``Folding``).
public struct FoldedParameters: Sendable {
    public let architecture: Architecture
    /// Tensor names in the order they were produced.
    public private(set) var names: [String] = []
    public private(set) var tensors: [String: Tensor] = [:]

    public init(architecture: Architecture) { self.architecture = architecture }

    mutating func set(_ name: String, shape: [Int], _ values: [Float]) {
        precondition(tensors[name] == nil, "folded tensor \(name) produced twice")
        names.append(name)
        tensors[name] = Tensor(shape: shape, data: values)
    }

    /// Adds a tensor read from a fused model file.
    public mutating func add(_ name: String, _ tensor: Tensor) throws {
        guard tensors[name] == nil else { throw EngineError.invalidFusedModel("tensor '\(name)' appears twice") }
        names.append(name)
        tensors[name] = tensor
    }
}
