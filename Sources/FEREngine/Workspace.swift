import FERKernels

/// Every buffer one forward pass of a ``Network`` needs for a given batch size, allocated once.
/// A forward pass writes only into these, so steady-state inference allocates nothing.
final class Workspace {
    /// Capacity: the largest batch the buffers hold.
    let batch: Int
    /// The batch size of the pass being run (at most `batch`).
    var active: Int
    /// Where to record per-stage time, when profiling.
    var profile: StageProfile?
    // NHWC activations; `a`/`b` alternate as the running tensor, `expanded`/`depthwise` serve the blocks.
    let input: UnsafeMutablePointer<Float>      // (batch, 112, 112, 3)
    let a: UnsafeMutablePointer<Float>
    let b: UnsafeMutablePointer<Float>
    let expanded: UnsafeMutablePointer<Float>
    let depthwise: UnsafeMutablePointer<Float>
    let columns: UnsafeMutablePointer<Float>    // stem im2col (batch*56*56, 27)
    let pooled: UnsafeMutablePointer<Float>     // coordinate pooling (batch, h+w, channels)
    let hidden: UnsafeMutablePointer<Float>     // (batch, h+w, mip)
    // Head buffers.
    let headA: UnsafeMutablePointer<Float>
    let headB: UnsafeMutablePointer<Float>
    // Results, owned by the session: a pass writes rows `offset ..< offset + active` of them
    // (see `bind(_:offset:)`).
    private(set) var outputs: UnsafeMutablePointer<Float>    // (batch, outputWidth): logits or embedding
    private(set) var probabilities: UnsafeMutablePointer<Float>
    private(set) var featureMap: UnsafeMutablePointer<Float> // (batch, channels, 7, 7) NCHW, as PyTorch returns it
    private(set) var pooledFeatures: UnsafeMutablePointer<Float>  // (batch, channels)
    private let outputWidth: Int, featureChannels: Int
    private var all: [(UnsafeMutablePointer<Float>, Int)] = []

    /// The session's result buffers, for the whole batch.
    struct Results {
        let outputs, probabilities, featureMap, pooledFeatures: UnsafeMutablePointer<Float>
    }

    init(network: Network, batch: Int, results: Results) {
        self.batch = batch
        self.active = batch
        let s = Network.inputSize
        var activation = s * s * 3, expand = 0, dw = 0, pool = 0, hid = 0
        let stem = network.stem
        var (h, w) = ((s - 1) / stem.stride + 1, (s - 1) / stem.stride + 1)
        let stemColumns = h * w * stem.kernel * stem.kernel * stem.cin
        activation = max(activation, h * w * network.stem.cout)
        for block in network.blocks {
            expand = max(expand, h * w * block.expand.cout)
            let oh = (h - 1) / block.stride + 1, ow = (w - 1) / block.stride + 1
            dw = max(dw, oh * ow * block.expand.cout)
            pool = max(pool, (oh + ow) * block.expand.cout)
            hid = max(hid, (oh + ow) * block.attention.conv1.cout)
            (h, w) = (oh, ow)
            activation = max(activation, h * w * block.project.cout)
        }
        activation = max(activation, h * w * network.featureChannels)
        let c = network.featureChannels
        pool = max(pool, 14 * c)
        hid = max(hid, 14 * 64)
        var headSize = h * w * c
        if case .spatialBias(let reduce, _, _, _) = network.head { headSize = max(headSize, h * w * reduce.cout) }
        func make(_ count: Int) -> UnsafeMutablePointer<Float> { .allocate(capacity: max(1, count * batch)) }
        input = make(s * s * 3)
        a = make(activation)
        b = make(activation)
        expanded = make(expand)
        depthwise = make(dw)
        columns = make(stemColumns)
        pooled = make(pool)
        hidden = make(hid)
        headA = make(headSize)
        headB = make(headSize)
        outputWidth = network.outputWidth
        featureChannels = c
        outputs = results.outputs
        probabilities = results.probabilities
        featureMap = results.featureMap
        pooledFeatures = results.pooledFeatures
        all = [(input, s * s * 3), (a, activation), (b, activation), (expanded, expand), (depthwise, dw),
               (columns, stemColumns), (pooled, pool), (hidden, hid), (headA, headSize), (headB, headSize)]
        for (p, n) in all { p.initialize(repeating: 0, count: max(1, n * batch)) }
    }

    /// Points the next pass's results at sample `offset` of the session's buffers.
    func bind(_ results: Results, offset: Int) {
        outputs = results.outputs + offset * outputWidth
        probabilities = results.probabilities + offset * outputWidth
        featureMap = results.featureMap + offset * featureChannels * 49
        pooledFeatures = results.pooledFeatures + offset * featureChannels
    }

    /// Bytes held by the buffers.
    var byteCount: Int { all.reduce(0) { $0 + max(1, $1.1 * batch) } * MemoryLayout<Float>.size }

    deinit { for (p, _) in all { p.deallocate() } }
}
