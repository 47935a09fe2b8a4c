import FERTensor

/// The folded, packed weights of a model: what the forward pass reads, and what a fused model
/// file stores. Names are the runtime's own (`features.3.2.expand.weight`, `sb.reduce.bias`, ...)
/// and layouts are the kernels' (see ``Folding``).
///
/// The values live back to back in one append-only arena that the running network then points
/// into, so a loaded model holds its weights once.
public struct FoldedParameters: Sendable {
    public let architecture: Architecture
    /// Tensor names in the order they were produced.
    public private(set) var names: [String] = []
    private var layout: [String: (offset: Int, shape: [Int])] = [:]
    private(set) var arena: ParameterArena

    /// An empty set; `capacity` values are reserved up front (growing later copies the arena).
    public init(architecture: Architecture, capacity: Int = 0) {
        self.architecture = architecture
        self.arena = ParameterArena(capacity: capacity)
    }

    /// Number of values held.
    public var valueCount: Int { arena.count }

    /// A copy of tensor `name`.
    public func tensor(_ name: String) -> Tensor? {
        guard let entry = layout[name] else { return nil }
        let count = entry.shape.reduce(1, *)
        return Tensor(shape: entry.shape, data: Array(UnsafeBufferPointer(start: arena.base + entry.offset, count: count)))
    }

    /// Where tensor `name` lives in the arena, and its shape. Valid once building is finished.
    func location(_ name: String) -> (offset: Int, shape: [Int])? { layout[name] }

    mutating func set(_ name: String, shape: [Int], _ values: [Float]) {
        precondition(layout[name] == nil, "folded tensor \(name) produced twice")
        precondition(shape.reduce(1, *) == values.count, "folded tensor \(name): \(values.count) values for \(shape)")
        // Copy on write: a network built on this arena points into it, so it is never moved under it.
        if !isKnownUniquelyReferenced(&arena) { arena = arena.copy() }
        names.append(name)
        layout[name] = (arena.append(values), shape)
    }

    /// Adds a tensor read from a fused model file.
    public mutating func add(_ name: String, _ tensor: Tensor) throws {
        guard layout[name] == nil else { throw EngineError.invalidFusedModel("tensor '\(name)' appears twice") }
        set(name, shape: tensor.shape, tensor.data)
    }
}

/// Append-only float storage. Appending may move it, so pointers into it are taken only after
/// the last append (``Network`` does so when it is built).
final class ParameterArena: @unchecked Sendable {
    private(set) var base: UnsafeMutablePointer<Float>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1024)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    func copy() -> ParameterArena {
        let other = ParameterArena(capacity: capacity)
        other.base.initialize(from: base, count: count)
        other.count = count
        return other
    }

    /// Appends `values` and returns their offset.
    func append(_ values: [Float]) -> Int {
        if count + values.count > capacity {
            let grown = max(capacity * 2, count + values.count)
            let moved = UnsafeMutablePointer<Float>.allocate(capacity: grown)
            moved.moveInitialize(from: base, count: count)
            base.deallocate()
            base = moved
            capacity = grown
        }
        (base + count).initialize(from: values, count: values.count)
        count += values.count
        return count - values.count
    }
}
