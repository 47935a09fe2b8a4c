import FERTensor

/// One tensor of a PyTorch state_dict as the engine sees it: a shape, and values converted to
/// float32 only when the architecture asks for them.
public struct RawTensor {
    public let shape: [Int]
    let values: () throws -> [Float]

    public init(shape: [Int], values: @escaping () throws -> [Float]) {
        self.shape = shape
        self.values = values
    }
}

/// A state_dict under strict loading: every key must be used or deliberately ignored, and every
/// shape must be what the architecture expects. Problems are collected, not thrown one by one,
/// so ``finish(_:)`` can report them all in one ``EngineError/weightMismatch(architecture:missing:unexpected:shapes:)``.
struct RawWeights {
    private let tensors: [String: RawTensor]
    private let order: [String]
    private var used: Set<String> = []
    private var missing: [String] = []
    private var shapeErrors: [String] = []

    /// The architecture being loaded, for messages.
    let architecture: String

    init(order: [String], tensors: [String: RawTensor], architecture: String) {
        self.order = order
        self.tensors = tensors
        self.architecture = architecture
    }

    func contains(_ name: String) -> Bool { tensors[name] != nil }
    /// Values in all tensors, an upper bound for the folded parameters, to reserve space up front.
    /// Shapes are declarations (a view may declare far more than its file holds), so the sum
    /// saturates at `limit` instead of overflowing.
    func valueCount(limit: Int) -> Int {
        min(limit, RawWeights.elementTotal(tensors.values.map(\.shape)))
    }

    /// Elements of all `shapes` together, Int.max when a shape is impossible or the sum overflows.
    static func elementTotal<S: Sequence<[Int]>>(_ shapes: S) -> Int {
        var total = 0
        for shape in shapes {
            guard let n = elementCount(shape) else { return .max }
            let (sum, overflow) = total.addingReportingOverflow(n)
            if overflow { return .max }
            total = sum
        }
        return total
    }
    func shape(_ name: String) -> [Int]? { tensors[name]?.shape }

    /// The values of `name`, which must have `shape`. A missing or mis-shaped tensor is recorded
    /// and zeros of the expected size are returned so that collection can go on; ``finish(_:)``
    /// then throws before any of them can be used.
    mutating func take(_ name: String, _ shape: [Int]) throws -> [Float] {
        // Expected shapes are arithmetic on other tensors' shapes: a hostile checkpoint can make
        // them negative or overflowing, and a placeholder must not become a memory bomb.
        guard let count = RawWeights.elementCount(shape) else {
            shapeErrors.append("\(name): the tensors before it imply the impossible shape \(shape)")
            throw problems(architecture)
        }
        guard let tensor = tensors[name] else {
            missing.append("\(name) \(shape)")
            return try placeholder(count)
        }
        used.insert(name)
        guard tensor.shape == shape else {
            shapeErrors.append("\(name): checkpoint \(tensor.shape), expected \(shape)")
            return try placeholder(count)
        }
        do {
            return try tensor.values()
        } catch {
            throw EngineError.unusableTensor(name: name, reason: "\(error)")
        }
    }

    /// Largest placeholder handed out for a missing or mis-shaped tensor so that collection can
    /// go on; past it, the problems so far are thrown at once.
    static let placeholderLimit = 1 << 24

    private func placeholder(_ count: Int) throws -> [Float] {
        guard count <= RawWeights.placeholderLimit else { throw problems(architecture) }
        return [Float](repeating: 0, count: count)
    }

    /// Elements of `shape`, nil when a dimension is negative or the product overflows.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Marks `name` as deliberately unused (it may be absent).
    mutating func ignore(_ name: String) { if tensors[name] != nil { used.insert(name) } }

    /// Marks every key starting with `prefix` as deliberately unused; returns how many learnable
    /// parameters they hold (BatchNorm running statistics excluded).
    @discardableResult
    mutating func ignore(prefix: String) -> Int {
        let names = order.filter { $0.hasPrefix(prefix) }
        used.formUnion(names)
        return RawWeights.elementTotal(names.filter { !RawWeights.isBuffer($0) }.map { tensors[$0]!.shape })
    }

    /// BatchNorm running statistics: in the state_dict, not among `model.parameters()`.
    static func isBuffer(_ name: String) -> Bool {
        name.hasSuffix(".running_mean") || name.hasSuffix(".running_var") || name.hasSuffix(".num_batches_tracked")
    }

    /// Folded BatchNorm `y = x * scale + shift` from `prefix.{weight,bias,running_mean,running_var}`.
    mutating func batchNorm(_ prefix: String, channels: Int, eps: Double = 1e-5) throws -> (scale: [Float], shift: [Float]) {
        let gamma = try take("\(prefix).weight", [channels])
        let beta = try take("\(prefix).bias", [channels])
        let mean = try take("\(prefix).running_mean", [channels])
        let variance = try take("\(prefix).running_var", [channels])
        ignore("\(prefix).num_batches_tracked")
        var scale = [Float](repeating: 0, count: channels)
        var shift = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            let s = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
            scale[c] = Float(s)
            shift[c] = Float(Double(beta[c]) - Double(mean[c]) * s)
        }
        return (scale, shift)
    }

    /// Throws the collected problems, and any key that nothing used.
    func finish(_ architecture: Architecture) throws {
        let unexpected = order.filter { !used.contains($0) }
        if !missing.isEmpty || !unexpected.isEmpty || !shapeErrors.isEmpty {
            throw EngineError.weightMismatch(
                architecture: architecture.description, missing: missing, unexpected: unexpected, shapes: shapeErrors)
        }
    }

    /// The problems collected so far, for a load that cannot go on.
    private func problems(_ architecture: String) -> EngineError {
        .weightMismatch(architecture: architecture, missing: missing, unexpected: [], shapes: shapeErrors)
    }
}
