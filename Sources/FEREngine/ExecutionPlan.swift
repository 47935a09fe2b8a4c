import FERKernels

/// NHWC shape of one image's activation (the batch axis excluded).
public struct ActivationShape: Hashable, Sendable, CustomStringConvertible {
    public var height: Int, width: Int, channels: Int
    public var count: Int { height * width * channels }
    public var description: String { "\(height)x\(width)x\(channels)" }
}

/// Where the memory planner put one buffer of a plan, per image (a session scales offsets and
/// counts by its batch size).
public struct BufferPlacement: Sendable, Equatable {
    /// `tensor N` or `scratch of operation N`.
    public let name: String
    /// First and last operation (inclusive) that use the buffer; -1 is before the first
    /// operation (the input), the operation count is after the last (outputs).
    public let first: Int, last: Int
    /// Offset and size in floats.
    public let offset: Int, count: Int
}

/// A ``ModelGraph`` made runnable for one input size: every tensor's shape inferred, every
/// weight checked against the operation that uses it and resolved to a pointer, and every tensor
/// and scratch buffer given an offset in one arena from their lifetimes (``MemoryPlanner``).
///
/// Offsets are per image; a session for `batch` images scales them by `batch`, which keeps
/// buffers that never meet apart (each tensor holds its images back to back).
final class ExecutionPlan: @unchecked Sendable {
    // @unchecked: immutable after init; the pointers point into the model's weight arena.
    let height: Int, width: Int
    let shapes: [ActivationShape]
    let steps: [Step]
    /// Per-image arena offset of each tensor, then of each step's scratch buffer.
    let offsets: [Int]
    /// Floats of arena one image needs.
    let arenaSize: Int
    /// Where each buffer lives, for checks and reports.
    let placements: [BufferPlacement]
    let graph: ModelGraph

    /// One operation with its weights resolved.
    struct Step {
        enum Work {
            case convolution(ConvolutionStep)
            case depthwise(DepthwiseStep)
            case add(Int, Int), maximum(Int, Int), multiply(Int, Int)
            case concatChannels([Int]), concatPositions([Int])
            case resizeNearest(Int)
            case coordinatePool(Int)
            /// A coordinate pooling its input's depthwise steps do as they write it (``DepthwiseStep/pool``).
            case pooledByDepthwise(Int)
            case attention(AttentionStep)
            case gate(x: Int, gates: Int)
            case gateMap(gates: Int)
            case adaptivePool(Int)
            case channelConvolution(ChannelConvolutionStep)
            case softmax(Int, group: Int)
            case l2Normalize
        }
        let work: Work
        let output: Int
        /// Index of this step's scratch buffer in ``ExecutionPlan/offsets`` (nil: none).
        let scratch: Int?
        /// Profile row: the stage and a label for the kernel.
        let stage: String, label: String
        let reports: [String]
    }
    struct ConvolutionStep {
        let input: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: Activation
        let kernel: Int, stride: Int, padding: Int, cin: Int, cout: Int, accumulate: Bool
        /// The matrix product's kernel, chosen per shape when the plan is made (``GEMMChoice``).
        let gemm: GEMMChoice
        /// Every convolution but a 1x1 at stride 1 without padding: its shape for one image, run by
        /// ``DenseConvolution`` on the `.packed` weights, with ``DenseConvolution/scratchCount(_:method:)``
        /// floats of scratch.
        let geometry: ConvolutionGeometry?
    }
    /// Which kernel runs a convolution's matrix product.
    enum GEMMChoice {
        /// OpenBLAS `sgemm` on the folded weights, then bias and activation in a second pass.
        case blas
        /// ``PackedGEMM`` on weights packed at load, bias and `epilogue` applied in its epilogue;
        /// `activation`, when not nil, runs as a second pass (h_swish, sigmoid).
        case packed(PackedWeights, epilogue: PackedEpilogue, activation: Activation?)
        /// ``Winograd`` F(4x4, 3x3) on weights transformed at load (3x3 convolutions at stride 1
        /// where ``Winograd/pays(_:)``), bias and `epilogue` applied by its output transform.
        case winograd(WinogradWeights, epilogue: PackedEpilogue)
    }
    struct DepthwiseStep {
        let input: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: Activation
        let geometry: DepthwiseGeometry  // batch 1; the pass sets the batch
        /// The tensor that takes the coordinate pooling of this step's output channels, pooled a
        /// few rows at a time right after they are written (nil: no pooling follows).
        var pool: Int? = nil
    }
    struct AttentionStep {
        let pooled: Int, rows: Int, columns: Int, channels: Int, hidden: Int
        /// conv1 `(channels, hidden)`, conv2 and conv3 `(hidden, channels)`, packed with their biases.
        let conv1: PackedWeights, conv2: PackedWeights, conv3: PackedWeights
    }
    struct ChannelConvolutionStep {
        let input: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outputs: Int, positions: Int, kernel: Int
    }

    /// Largest arena one image may need (floats): a bound on what a hostile graph or a huge input can ask for.
    static let arenaLimit = 1 << 31

    /// - Parameter packing: where the packed copies of the convolutions' weights are made and
    ///   kept (one per model, shared by its plans).
    init(graph: ModelGraph, weights: FoldedParameters, packing: WeightPacking, height: Int, width: Int) throws {
        self.graph = graph
        self.height = height
        self.width = width
        func fail(_ index: Int, _ reason: String) -> EngineError {
            let op = index < graph.operations.count ? graph.operations[index] : nil
            return .invalidPlan(operation: index, stage: op?.stage ?? "", reason: reason)
        }
        guard height >= 1, width >= 1, height <= 1 << 15, width <= 1 << 15 else {
            throw EngineError.inputShape(expected: "height and width in 1...32768", got: [height, width])
        }
        guard graph.tensorCount >= 1, graph.tensorCount <= 1 << 20, graph.inputChannels >= 1, graph.inputChannels <= 1 << 16 else {
            throw fail(0, "graph has \(graph.tensorCount) tensors and \(graph.inputChannels) input channels")
        }
        var shapes = [ActivationShape?](repeating: nil, count: graph.tensorCount)
        shapes[0] = ActivationShape(height: height, width: width, channels: graph.inputChannels)
        var first = [Int](repeating: Int.max, count: graph.tensorCount)
        var last = [Int](repeating: -1, count: graph.tensorCount)
        first[0] = -1
        var steps: [Step] = []
        var scratchSizes: [(size: Int, step: Int)] = []

        for (index, op) in graph.operations.enumerated() {
            guard op.output >= 0, op.output < graph.tensorCount, op.output != 0 else { throw fail(index, "output tensor \(op.output) out of range") }
            var inputShapes: [ActivationShape] = []
            for t in op.inputs {
                guard t >= 0, t < graph.tensorCount else { throw fail(index, "input tensor \(t) out of range") }
                guard let s = shapes[t] else { throw fail(index, "reads tensor \(t) before anything writes it") }
                inputShapes.append(s)
                last[t] = index
            }
            func inputs(_ n: Int) throws {
                guard op.inputs.count == n else { throw fail(index, "takes \(n) inputs, has \(op.inputs.count)") }
            }
            func weight(_ name: String, _ expected: [Int]) throws -> UnsafePointer<Float> {
                guard let (offset, shape) = weights.location(name) else { throw fail(index, "missing weight '\(name)'") }
                guard shape == expected else {
                    throw EngineError.planShape(operation: index, stage: op.stage, key: name, expected: expected, actual: shape)
                }
                return UnsafePointer(weights.arena.base + offset)
            }
            func activation(_ f: ActivationFunction, slope: String?, channels: Int) throws -> Activation {
                switch f {
                case .identity: return .identity
                case .relu: return .relu
                case .hardSwish: return .hardSwish
                case .sigmoid: return .sigmoid
                case .leakyRelu(let s): return .leakyRelu(s)
                case .prelu:
                    guard let slope else { throw fail(index, "PReLU without a slope weight") }
                    return .prelu(try weight(slope, [channels]))
                }
            }
            let output: ActivationShape
            var scratch: Int? = nil
            let work: Step.Work
            var label: String
            switch op.kind {
            case .convolution(let c):
                try inputs(1)
                let x = inputShapes[0]
                guard c.kernel >= 1, c.stride >= 1, c.padding >= 0, c.padding < c.kernel,
                      x.height + 2 * c.padding >= c.kernel, x.width + 2 * c.padding >= c.kernel else {
                    throw fail(index, "convolution \(c.kernel)x\(c.kernel) stride \(c.stride) padding \(c.padding) does not fit a \(x) input")
                }
                guard let wshape = weights.location(c.weight)?.shape, wshape.count == 4 else { throw fail(index, "missing weight '\(c.weight)' [k, k, cin, cout]") }
                let cout = wshape[3]
                guard cout >= 1 else { throw fail(index, "convolution with \(cout) output channels") }
                let w = try weight(c.weight, [c.kernel, c.kernel, x.channels, cout])
                output = ActivationShape(height: Im2col.outputSize(x.height, kernel: c.kernel, stride: c.stride, pad: c.padding),
                                         width: Im2col.outputSize(x.width, kernel: c.kernel, stride: c.stride, pad: c.padding), channels: cout)
                let direct = !(c.kernel == 1 && c.stride == 1 && c.padding == 0)  // DenseConvolution, not a product
                var geometry: ConvolutionGeometry? = nil
                if direct {
                    do {
                        geometry = try ConvolutionGeometry(batch: 1, height: x.height, width: x.width, inputChannels: x.channels,
                                                           outputChannels: cout, kernel: c.kernel, stride: c.stride, padding: c.padding)
                    } catch { throw fail(index, error.description) }
                }
                let bias = try c.bias.map { try weight($0, [cout]) }
                let act = try activation(c.activation, slope: c.slope, channels: cout)
                let inner = c.kernel * c.kernel * x.channels
                var gemm = GEMMChoice.blas
                if direct || GEMMChoice.packedWins(rows: output.height * output.width, inner: inner, columns: cout) {
                    let (epilogue, after): (PackedEpilogue, Activation?) = switch act {
                    case .identity: (.identity, nil)
                    case .relu: (.relu, nil)
                    case .leakyRelu(let s): (.leakyRelu(s), nil)
                    case .prelu: (.prelu, nil)
                    case .hardSwish, .sigmoid: (.identity, act)
                    }
                    var slopes: UnsafePointer<Float>? = nil
                    if case .prelu(let s) = act { slopes = s }
                    let key = [c.weight, c.bias ?? "", c.slope ?? "", "\(inner)x\(cout)"].joined(separator: "\u{1}")
                    if let g = geometry, after == nil, Winograd.pays(g) {
                        gemm = .winograd(packing.packed(key + "\u{1}winograd") {
                            WinogradWeights(weight: w, inputChannels: x.channels, outputChannels: cout, bias: bias, slopes: slopes)
                        }, epilogue: epilogue)
                    } else {
                        gemm = .packed(packing.packed(key) {
                            PackedWeights(b: w, k: inner, n: cout, ldb: cout, bias: bias, slopes: slopes)
                        }, epilogue: epilogue, activation: after)
                    }
                }
                if let g = geometry {
                    if case .winograd = gemm { scratchSizes.append((Winograd.scratchCount(g), index)) }
                    else { scratchSizes.append((DenseConvolution.scratchCount(g), index)) }
                    scratch = scratchSizes.count - 1
                }
                work = .convolution(ConvolutionStep(
                    input: op.inputs[0], weight: w, bias: bias, activation: act,
                    kernel: c.kernel, stride: c.stride, padding: c.padding, cin: x.channels, cout: cout, accumulate: c.accumulate,
                    gemm: gemm, geometry: geometry))
                let product: String
                if case .packed = gemm { product = "packed GEMM" } else { product = "GEMM" }
                let method: String
                if case .winograd = gemm { method = "Winograd" } else { method = "direct" }
                label = (direct ? "\(c.kernel)x\(c.kernel) conv" + (c.stride > 1 ? " s\(c.stride)" : "") + " (\(method))" : (x.height * x.width == 1 ? "linear" : "1x1 \(product)"))
                    + Self.suffix(c.activation)
                if c.accumulate { label += " + residual" }
                if c.accumulate && shapes[op.output] == nil { throw fail(index, "accumulates into tensor \(op.output) before anything writes it") }
            case .depthwise(let d):
                try inputs(1)
                let x = inputShapes[0]
                guard d.kernelHeight >= 1, d.kernelWidth >= 1, d.stride >= 1, d.padTop >= 0, d.padLeft >= 0,
                      d.channels >= 1, d.channelOffset >= 0, d.channelOffset + d.channels <= x.channels,
                      x.height + 2 * d.padTop >= d.kernelHeight, x.width + 2 * d.padLeft >= d.kernelWidth else {
                    throw fail(index, "depthwise \(d.kernelHeight)x\(d.kernelWidth) over channels \(d.channelOffset)..<\(d.channelOffset + d.channels) does not fit a \(x) input")
                }
                let g = DepthwiseGeometry(batch: 1, height: x.height, width: x.width, channelStride: x.channels, channelOffset: d.channelOffset,
                                          channels: d.channels, kernelHeight: d.kernelHeight, kernelWidth: d.kernelWidth, stride: d.stride,
                                          padTop: d.padTop, padLeft: d.padLeft)
                output = ActivationShape(height: g.outHeight, width: g.outWidth, channels: x.channels)
                work = .depthwise(DepthwiseStep(
                    input: op.inputs[0], weight: try weight(d.weight, [d.kernelHeight, d.kernelWidth, d.channels]),
                    bias: try d.bias.map { try weight($0, [d.channels]) },
                    activation: try activation(d.activation, slope: d.slope, channels: d.channels), geometry: g))
                label = "depthwise \(d.kernelHeight)x\(d.kernelWidth)" + (d.stride > 1 ? " s\(d.stride)" : "") + Self.suffix(d.activation)
            case .add, .maximum, .multiply:
                try inputs(2)
                guard inputShapes[0] == inputShapes[1] else { throw fail(index, "operands \(inputShapes[0]) and \(inputShapes[1]) differ") }
                output = inputShapes[0]
                let (a, b) = (op.inputs[0], op.inputs[1])
                switch op.kind {
                case .add: work = .add(a, b); label = "add"
                case .maximum: work = .maximum(a, b); label = "maximum"
                default: work = .multiply(a, b); label = "multiply"
                }
            case .concatChannels:
                guard let s = inputShapes.first, inputShapes.allSatisfy({ $0.height == s.height && $0.width == s.width }) else {
                    throw fail(index, "concatenated tensors differ in size: \(inputShapes)")
                }
                output = ActivationShape(height: s.height, width: s.width, channels: inputShapes.reduce(0) { $0 + $1.channels })
                work = .concatChannels(op.inputs)
                label = "concat"
            case .concatPositions:
                guard let s = inputShapes.first, inputShapes.allSatisfy({ $0.channels == s.channels }) else {
                    throw fail(index, "concatenated tensors differ in channels: \(inputShapes)")
                }
                output = ActivationShape(height: inputShapes.reduce(0) { $0 + $1.height * $1.width }, width: 1, channels: s.channels)
                work = .concatPositions(op.inputs)
                label = "concat"
            case .resizeNearest:
                try inputs(2)
                output = ActivationShape(height: inputShapes[1].height, width: inputShapes[1].width, channels: inputShapes[0].channels)
                work = .resizeNearest(op.inputs[0])
                label = "nearest resize"
            case .coordinatePool:
                try inputs(1)
                let x = inputShapes[0]
                output = ActivationShape(height: x.height + x.width, width: 1, channels: x.channels)
                // A pooled tensor nothing has written yet (so none of the steps reads it) is
                // filled by the depthwise steps that wrote the input, as they go.
                // Nothing before those steps may have written the input (it would have to be pooled too).
                if shapes[op.output] == nil, let writers = Self.depthwiseWriters(of: op.inputs[0], channels: x.channels, in: steps),
                   first[op.inputs[0]] == writers.last! {
                    for w in writers {
                        guard case .depthwise(var d) = steps[w].work else { continue }
                        d.pool = op.output
                        let s = steps[w]
                        steps[w] = Step(work: .depthwise(d), output: s.output, scratch: s.scratch, stage: s.stage, label: s.label + " + pooling",
                                        reports: s.reports)
                    }
                    // The pooled tensor is written from the first of them on.
                    first[op.output] = writers.last!
                    work = .pooledByDepthwise(op.inputs[0])
                    label = "coordinate pooling (in depthwise)"
                } else {
                    work = .coordinatePool(op.inputs[0])
                    label = "coordinate pooling"
                }
            case .attentionGates(let a):
                try inputs(2)
                let (pooled, map) = (inputShapes[0], inputShapes[1])
                guard pooled == ActivationShape(height: map.height + map.width, width: 1, channels: map.channels) else {
                    throw fail(index, "pooled rows and columns \(pooled) do not fit a \(map) map")
                }
                guard let hshape = weights.location(a.conv1Weight)?.shape, hshape.count == 2 else { throw fail(index, "missing weight '\(a.conv1Weight)' [c, hidden]") }
                let c = map.channels, hidden = hshape[1]
                scratchSizes.append(((map.height + map.width) * hidden, index))
                scratch = scratchSizes.count - 1
                output = pooled
                guard hidden >= 1 else { throw fail(index, "attention with \(hidden) hidden channels") }
                // The gates' products are small and thin (hidden is 8 to 32): the packed kernel's
                // 6-row tiles keep twelve FMA chains going where one row at a time would wait on one.
                func packed(_ w: String, _ b: String, _ k: Int, _ n: Int) throws -> PackedWeights {
                    let (wp, bp) = (try weight(w, [k, n]), try weight(b, [n]))
                    return packing.packed([w, b, "\(k)x\(n)"].joined(separator: "\u{1}")) { PackedWeights(b: wp, k: k, n: n, ldb: n, bias: bp, slopes: nil) }
                }
                work = .attention(AttentionStep(
                    pooled: op.inputs[0], rows: map.height, columns: map.width, channels: c, hidden: hidden,
                    conv1: try packed(a.conv1Weight, a.conv1Bias, c, hidden),
                    conv2: try packed(a.conv2Weight, a.conv2Bias, hidden, c),
                    conv3: try packed(a.conv3Weight, a.conv3Bias, hidden, c)))
                label = "attention gates"
            case .gate, .gateMap:
                try inputs(2)
                let (x, gates) = op.kind == .gate ? (inputShapes[0], inputShapes[1]) : (inputShapes[1], inputShapes[0])
                guard gates == ActivationShape(height: x.height + x.width, width: 1, channels: x.channels) else {
                    throw fail(index, "gates \(gates) do not fit a \(x) map")
                }
                output = x
                work = op.kind == .gate ? .gate(x: op.inputs[0], gates: op.inputs[1]) : .gateMap(gates: op.inputs[0])
                label = "gate"
            case .adaptiveAveragePool(let h, let w):
                try inputs(1)
                guard h >= 1, w >= 1, h <= inputShapes[0].height, w <= inputShapes[0].width else {
                    throw fail(index, "adaptive pool to \(h)x\(w) of a \(inputShapes[0]) input")
                }
                output = ActivationShape(height: h, width: w, channels: inputShapes[0].channels)
                work = .adaptivePool(op.inputs[0])
                label = "adaptive average pool"
            case .channelConvolution(let c):
                try inputs(1)
                let x = inputShapes[0]
                guard let wshape = weights.location(c.weight)?.shape, wshape.count == 3 else { throw fail(index, "missing weight '\(c.weight)' [outputs, positions, kernel]") }
                let (outs, k) = (wshape[0], wshape[2])
                guard k >= 1, k <= x.channels else { throw fail(index, "kernel \(k) longer than \(x.channels) channels") }
                let w = try weight(c.weight, [outs, x.height * x.width, k])
                output = ActivationShape(height: 1, width: 1, channels: outs * (x.channels - k + 1))
                work = .channelConvolution(ChannelConvolutionStep(
                    input: op.inputs[0], weight: w, bias: try weight(c.bias, [outs]), outputs: outs, positions: x.height * x.width, kernel: k))
                label = "Conv1d across channels"
            case .softmax(let group):
                try inputs(1)
                guard group >= 1, inputShapes[0].channels % group == 0 else { throw fail(index, "softmax groups of \(group) over \(inputShapes[0].channels) channels") }
                output = inputShapes[0]
                work = .softmax(op.inputs[0], group: group)
                label = "softmax"
            case .l2Normalize:
                try inputs(1)
                output = inputShapes[0]
                work = .l2Normalize
                label = "L2 normalise"
            }
            // Ops other than the first writer of a tensor must write it at its shape.
            if let existing = shapes[op.output] {
                guard existing == output else {
                    throw fail(index, "writes tensor \(op.output) as \(output), it is \(existing)")
                }
            }
            // Elementwise ops in place, or writes by several ops, keep the buffer alive across them.
            if case .l2Normalize = work, op.inputs[0] != op.output { throw fail(index, "L2 normalisation runs in place") }
            if case .gate = work, op.inputs[0] != op.output { throw fail(index, "gate runs in place") }
            if case .convolution(let c) = work, !c.accumulate, op.inputs.contains(op.output) { throw fail(index, "convolution cannot run in place") }
            if case .depthwise = work, op.inputs.contains(op.output) { throw fail(index, "depthwise convolution cannot run in place") }
            guard output.count > 0, output.count <= ExecutionPlan.arenaLimit else { throw fail(index, "output \(output) is empty or too large") }
            shapes[op.output] = output
            first[op.output] = min(first[op.output], index)
            last[op.output] = max(last[op.output], index)
            steps.append(Step(work: work, output: op.output, scratch: scratch.map { graph.tensorCount + $0 },
                              stage: op.stage, label: label, reports: op.reports))
        }
        for out in graph.outputs {
            guard out.tensor >= 0, out.tensor < graph.tensorCount, let s = shapes[out.tensor] else {
                throw fail(graph.operations.count, "output '\(out.name)' is tensor \(out.tensor), which nothing writes")
            }
            switch out.layout {
            case .vector: guard s.height == 1, s.width == 1 else { throw fail(graph.operations.count, "output '\(out.name)' is \(s), not a vector") }
            case .rows(let k): guard k >= 1, s.count % k == 0 else { throw fail(graph.operations.count, "output '\(out.name)' \(s) is not rows of \(k)") }
            case .map: break
            }
            last[out.tensor] = graph.operations.count
        }
        var buffers: [MemoryPlanner.Buffer] = []
        for t in 0..<graph.tensorCount {
            guard let s = shapes[t] else { continue }
            buffers.append(.init(size: s.count, first: first[t], last: max(last[t], first[t])))
        }
        var indexOfTensor = [Int](repeating: -1, count: graph.tensorCount)
        var k = 0
        for t in 0..<graph.tensorCount where shapes[t] != nil { indexOfTensor[t] = k; k += 1 }
        for (size, step) in scratchSizes {
            guard size <= ExecutionPlan.arenaLimit else { throw fail(step, "scratch of \(size) floats is too large") }
            buffers.append(.init(size: size, first: step, last: step))
        }
        let (placed, size) = MemoryPlanner.place(buffers)
        var placements: [BufferPlacement] = []
        for t in 0..<graph.tensorCount where indexOfTensor[t] >= 0 {
            let b = buffers[indexOfTensor[t]]
            placements.append(BufferPlacement(name: "tensor \(t)", first: b.first, last: b.last, offset: placed[indexOfTensor[t]], count: b.size))
        }
        for (i, s) in scratchSizes.enumerated() {
            placements.append(BufferPlacement(name: "scratch of operation \(s.step)", first: s.step, last: s.step, offset: placed[k + i], count: s.size))
        }
        self.placements = placements
        guard size <= ExecutionPlan.arenaLimit else { throw fail(graph.operations.count, "needs \(size) floats per image") }
        var offsets = [Int](repeating: 0, count: graph.tensorCount + scratchSizes.count)
        for t in 0..<graph.tensorCount where indexOfTensor[t] >= 0 { offsets[t] = placed[indexOfTensor[t]] }
        for i in 0..<scratchSizes.count { offsets[graph.tensorCount + i] = placed[k + i] }
        self.offsets = offsets
        self.arenaSize = size
        self.shapes = shapes.map { $0 ?? ActivationShape(height: 0, width: 0, channels: 0) }
        self.steps = steps
    }

    /// The steps at the end of `steps` that write `tensor` by depthwise convolutions, last first,
    /// when together they write each of its `channels` exactly once: the mixed depthwise layer a
    /// coordinate pooling follows. Nil otherwise.
    private static func depthwiseWriters(of tensor: Int, channels: Int, in steps: [Step]) -> [Int]? {
        var writers: [Int] = [], ranges: [Range<Int>] = []
        var i = steps.count - 1
        while i >= 0, steps[i].output == tensor, case .depthwise(let d) = steps[i].work, d.pool == nil {
            writers.append(i)
            ranges.append(d.geometry.channelOffset..<d.geometry.channelOffset + d.geometry.channels)
            i -= 1
        }
        var next = 0
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            guard r.lowerBound == next else { return nil }
            next = r.upperBound
        }
        return writers.isEmpty || next != channels ? nil : writers
    }

    private static func suffix(_ f: ActivationFunction) -> String {
        switch f {
        case .identity: return ""
        case .relu: return " + ReLU"
        case .leakyRelu: return " + LeakyReLU"
        case .prelu: return " + PReLU"
        case .hardSwish: return " + h_swish"
        case .sigmoid: return " + sigmoid"
        }
    }
}
