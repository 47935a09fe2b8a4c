import FERKernels

/// What every architecture builder shares: strict access to the state_dict, BatchNorm folding,
/// weight packing, and appending operations to a ``ModelGraph``.
///
/// Folded weights are stored under the runtime's own names in the kernels' layouts:
///
/// | folded tensor | shape | layout |
/// |---|---|---|
/// | dense conv / 1x1 conv / linear `*.weight` | `[k, k, cin, cout]` | im2col rows × output channels |
/// | depthwise `*.weight` | `[kh, kw, channels]` | tap-major |
/// | attention `*.conv1.weight`, `*.conv2.weight` ... | `[cin, cout]` | transposed PyTorch weight |
/// | `*.bias`, `*.slope` (PReLU) | `[channels]` | |
///
/// Shapes are chained: each weight is taken with the shape the tensor before it implies, so a
/// checkpoint whose layers do not fit together is refused with the key, the expected and the
/// actual shape (collected by ``RawWeights`` into one error).
struct GraphBuilder {
    var raw: RawWeights
    var folded: FoldedParameters
    private(set) var operations: [Operation] = []
    private(set) var tensorCount = 1
    var unused: [Source] = []
    var outputs: [GraphOutput] = []
    /// Module name used for profile rows of the operations appended next.
    var stage = ""

    init(raw: RawWeights, architecture: Architecture) {
        self.raw = raw
        // Reserved up front, bounded: the arena grows past it if the values really are there.
        self.folded = FoldedParameters(architecture: architecture, capacity: raw.valueCount(limit: 1 << 24))
    }

    mutating func newTensor() -> Int {
        tensorCount += 1
        return tensorCount - 1
    }

    /// Appends `kind` writing `output` (a new tensor when nil); returns the tensor written.
    @discardableResult
    mutating func append(_ kind: Operation.Kind, _ inputs: [Int], output: Int? = nil, sources: [Source] = []) -> Int {
        let out = output ?? newTensor()
        operations.append(Operation(kind, inputs: inputs, output: out, stage: stage, sources: sources))
        return out
    }

    /// Marks the last operation's output as the output of PyTorch module `name`.
    mutating func report(_ name: String) { operations[operations.count - 1].reports.append(name) }

    func graph(inputChannels: Int, inputSize: Int?) -> ModelGraph {
        ModelGraph(inputChannels: inputChannels, tensorCount: tensorCount, operations: operations, outputs: outputs,
                   unused: unused, inputHeight: inputSize, inputWidth: inputSize)
    }

    // MARK: Folding

    /// A convolution (dense or depthwise) with optional own bias, optional BatchNorm and an
    /// activation, folded into one operation on `input` (`channels` wide). The kernel size and
    /// output width come from the checkpoint; `groups == channels` makes it depthwise.
    ///
    /// - Parameters:
    ///   - module: the conv's PyTorch path (`features.0.c`); its weight is `module.weight`.
    ///   - batchNorm: the BatchNorm's path, or nil.
    ///   - prelu: the PReLU's path (`.weight` holds the slopes), or nil.
    ///   - name: the folded tensors' prefix.
    ///   - padding: nil for `k / 2` on each side.
    @discardableResult
    mutating func convolution(
        _ input: Int, channels cin: Int, module: String, bias: Bool = false, batchNorm: String?, activation: ActivationFunction = .identity,
        prelu: String? = nil, depthwise: Bool = false, kernel: (Int, Int)? = nil, stride: Int = 1, padding: Int? = nil,
        name: String, output: Int? = nil, accumulate: Bool = false
    ) throws -> (tensor: Int, channels: Int) {
        let key = "\(module).weight"
        let shape = raw.shape(key) ?? []
        let cout = depthwise ? cin : (shape.first ?? cin)
        let kh = kernel?.0 ?? (shape.count == 4 ? shape[2] : 1)
        // Dense convolutions are square here: a non-square weight is reported as a shape mismatch.
        let kw = depthwise ? (kernel?.1 ?? (shape.count == 4 ? shape[3] : 1)) : kh
        let perGroup = depthwise ? 1 : cin
        var w = try raw.take(key, [cout, perGroup, kh, kw])
        var b = bias ? try raw.take("\(module).bias", [cout]) : [Float](repeating: 0, count: cout)
        var sources = [Source(name: module, kind: .convolution(macsPerOutput: perGroup * kh * kw),
                              parameters: w.count + (bias ? cout : 0))]
        if let batchNorm {
            let bn = try raw.batchNorm(batchNorm, channels: cout)
            scaleRows(&w, by: bn.scale)
            for c in 0..<cout { b[c] = b[c] * bn.scale[c] + bn.shift[c] }
            sources.append(Source(name: batchNorm, kind: .batchNorm, parameters: 2 * cout))
        }
        var slope: String? = nil
        if let prelu {
            folded.set("\(name).slope", shape: [cout], try raw.take("\(prelu).weight", [cout]))
            slope = "\(name).slope"
            sources.append(Source(name: prelu, kind: .prelu, parameters: cout))
        }
        let hasBias = bias || batchNorm != nil
        if hasBias { folded.set("\(name).bias", shape: [cout], b) }
        let function: ActivationFunction = prelu != nil ? .prelu : activation
        let out: Int
        if depthwise {
            folded.set("\(name).weight", shape: [kh, kw, cout], Depthwise.pack(torchWeight: w, channels: cout, kernelHeight: kh, kernelWidth: kw))
            let pad = padding.map { ($0, $0) } ?? (kh / 2, kw / 2)
            out = append(.depthwise(DepthwiseConvolution(
                kernelHeight: kh, kernelWidth: kw, stride: stride, padTop: pad.0, padLeft: pad.1, channelOffset: 0, channels: cout,
                weight: "\(name).weight", bias: hasBias ? "\(name).bias" : nil, activation: function, slope: slope)),
                [input], output: output, sources: sources)
        } else {
            // A 1x1 weight's im2col layout is its transpose; the plain transpose is 8x cheaper at load.
            let packed = kh == 1 ? transpose(w, rows: cout, cols: cin) : Im2col.packWeight(torchWeight: w, cout: cout, cin: cin, kernel: kh)
            folded.set("\(name).weight", shape: [kh, kh, cin, cout], packed)
            out = append(.convolution(Convolution(
                kernel: kh, stride: stride, padding: padding ?? kh / 2, weight: "\(name).weight", bias: hasBias ? "\(name).bias" : nil,
                activation: function, slope: slope, accumulate: accumulate)),
                [input], output: output, sources: sources)
        }
        return (out, cout)
    }

    /// `nn.Linear(cin, cout)` (optionally followed by a BatchNorm1d) as a 1x1 convolution on a 1x1 tensor.
    mutating func linear(_ input: Int, channels cin: Int, module: String, bias: Bool, batchNorm: String? = nil, name: String) throws -> (tensor: Int, channels: Int) {
        let cout = raw.shape("\(module).weight")?.first ?? 0
        var w = try raw.take("\(module).weight", [cout, cin])
        var b = bias ? try raw.take("\(module).bias", [cout]) : [Float](repeating: 0, count: cout)
        var sources = [Source(name: module, kind: .linear(macsPerOutput: cin), parameters: w.count + (bias ? cout : 0))]
        if let batchNorm {
            let bn = try raw.batchNorm(batchNorm, channels: cout)
            scaleRows(&w, by: bn.scale)
            for c in 0..<cout { b[c] = b[c] * bn.scale[c] + bn.shift[c] }
            sources.append(Source(name: batchNorm, kind: .batchNorm, parameters: 2 * cout))
        }
        folded.set("\(name).weight", shape: [1, 1, cin, cout], transpose(w, rows: cout, cols: cin))
        folded.set("\(name).bias", shape: [cout], b)
        let out = append(.convolution(Convolution(kernel: 1, stride: 1, padding: 0, weight: "\(name).weight", bias: "\(name).bias",
                                                  activation: .identity, slope: nil, accumulate: false)), [input], sources: sources)
        return (out, cout)
    }

    /// Coordinate attention's `conv1` (+ `bn1` folded), `conv2` and `conv3` as gates for `map`,
    /// computed from `pooled` (its row then column means, or a DDAM head's directional convolutions).
    mutating func attentionGates(pooled: Int, map: Int, channels: Int, module p: String, name: String) throws -> Int {
        let mip = raw.shape("\(p).conv1.weight")?.first ?? 0
        var w1 = try raw.take("\(p).conv1.weight", [mip, channels, 1, 1])
        let b1 = try raw.take("\(p).conv1.bias", [mip])
        let bn = try raw.batchNorm("\(p).bn1", channels: mip)
        scaleRows(&w1, by: bn.scale)
        folded.set("\(name).conv1.weight", shape: [channels, mip], transpose(w1, rows: mip, cols: channels))
        folded.set("\(name).conv1.bias", shape: [mip], (0..<mip).map { b1[$0] * bn.scale[$0] + bn.shift[$0] })
        var sources = [Source(name: "\(p).conv1", kind: .convolution(macsPerOutput: channels), parameters: mip * channels + mip),
                       Source(name: "\(p).bn1", kind: .batchNorm, parameters: 2 * mip)]
        for conv in ["conv2", "conv3"] {
            let w = try raw.take("\(p).\(conv).weight", [channels, mip, 1, 1])
            folded.set("\(name).\(conv).weight", shape: [mip, channels], transpose(w, rows: channels, cols: mip))
            folded.set("\(name).\(conv).bias", shape: [channels], try raw.take("\(p).\(conv).bias", [channels]))
            sources.append(Source(name: "\(p).\(conv)", kind: .convolution(macsPerOutput: mip), parameters: channels * mip + channels))
        }
        return append(.attentionGates(AttentionGates(
            conv1Weight: "\(name).conv1.weight", conv1Bias: "\(name).conv1.bias", conv2Weight: "\(name).conv2.weight",
            conv2Bias: "\(name).conv2.bias", conv3Weight: "\(name).conv3.weight", conv3Bias: "\(name).conv3.bias")),
            [pooled, map], sources: sources)
    }

    /// Records modules under `prefix` that the checkpoint holds and the forward pass skips.
    mutating func ignoreUnused(prefix: String, as name: String) {
        let parameters = raw.ignore(prefix: prefix)
        if parameters > 0 { unused.append(Source(name: name, kind: .unused, parameters: parameters)) }
    }

    /// Multiplies each row (output channel) of a `[rows, ...]` weight by `scale[row]`.
    private func scaleRows(_ w: inout [Float], by scale: [Float]) {
        let per = w.count / max(scale.count, 1)
        for r in 0..<scale.count {
            for i in 0..<per { w[r * per + i] *= scale[r] }
        }
    }

    func transpose(_ w: [Float], rows: Int, cols: Int) -> [Float] {
        var t = [Float](repeating: 0, count: w.count)
        for r in 0..<rows {
            for c in 0..<cols { t[c * rows + r] = w[r * cols + c] }
        }
        return t
    }
}
