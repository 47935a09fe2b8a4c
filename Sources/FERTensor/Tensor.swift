/// A dense float32 tensor in row-major (C) order.
///
/// The runtime's exchange type for inputs and outputs: `shape` lists the extents, outermost
/// first (PyTorch's NCHW order for images), and `data` holds `shape.reduce(1, *)` values.
public struct Tensor: Equatable, Sendable {
    /// Extents, outermost first. A 0-d tensor has an empty shape and one value.
    public var shape: [Int]
    /// The values in row-major order.
    public var data: [Float]

    /// Wraps `data` with `shape`; the counts must agree.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.shape = shape
        self.data = data
    }

    /// A tensor of `shape` filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// Number of values.
    public var count: Int { data.count }

    /// The `index`-th slice along the first axis (for example one sample of a batch).
    public func slice(_ index: Int) -> Tensor {
        precondition(!shape.isEmpty && index >= 0 && index < shape[0], "slice \(index) out of \(shape)")
        let inner = Array(shape.dropFirst())
        let size = inner.reduce(1, *)
        return Tensor(shape: inner, data: Array(data[index * size..<(index + 1) * size]))
    }
}
