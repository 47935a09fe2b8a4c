import FERKernels
import FERTensor

/// Called with each reported stage's activation (NCHW, the whole batch) when debugging a pass.
typealias StageObserver = (_ name: String, _ activation: Tensor) -> Void

/// One worker's memory for an ``ExecutionPlan``: a single arena holding every tensor and scratch
/// buffer of the plan for up to `batch` images, at the plan's offsets scaled by `batch`; and, when
/// it runs on several threads, the ``ThreadTeam`` that shares each pass.
final class Workspace: TeamTask {
    let plan: ExecutionPlan
    /// Images the arena holds.
    let batch: Int
    /// Images the next pass runs (at most ``batch``).
    var active: Int
    private let arena: UnsafeMutablePointer<Float>
    /// Start of each tensor (then each scratch buffer) in the arena.
    let buffers: [UnsafeMutablePointer<Float>]
    /// Per-stage timing while set.
    var profile: StageProfile?
    /// The sum of the weights read ahead of each step (``ExecutionPlan/Step/touchWeights()``), kept so the reads are.
    var touched: Float = 0
    /// Threads sharing each pass: this one and, while it is in use, the team's helpers.
    var threads: Int { sharing ? team!.size : 1 }
    private var team: ThreadTeam?
    private var sharing = false
    /// Per team member past the first, a scratch buffer as large as the largest step's.
    private var memberScratch: [UnsafeMutablePointer<Float>] = []
    private let scratchCount: Int
    /// The step the team is running.
    private var current = 0

    init(plan: ExecutionPlan, batch: Int) {
        self.plan = plan
        self.batch = batch
        self.active = batch
        let count = max(1, plan.arenaSize * batch)
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: count)
        arena.initialize(repeating: 0, count: count)
        self.arena = arena
        buffers = plan.offsets.map { arena + $0 * batch }
        scratchCount = max(1, plan.steps.compactMap { $0.scratch.map { plan.placements[$0].count } }.max() ?? 0) * batch
    }

    deinit {
        team?.stop()
        arena.deallocate()
        for p in memberScratch { p.deallocate() }
    }

    /// Makes the next passes run on `threads` threads. The helpers start the first time more
    /// than one is asked for and stay (asleep) while passes run on one thread, so a session that
    /// alternates single images and batches starts them once.
    func use(threads: Int) {
        precondition(threads >= 1)
        sharing = threads > 1
        guard sharing, team?.size != threads else { return }
        team?.stop()
        for p in memberScratch { p.deallocate() }
        team = ThreadTeam(size: threads)
        memberScratch = (1..<threads).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
            p.initialize(repeating: 0, count: scratchCount)
            return p
        }
    }

    /// Step `step`'s scratch buffer for team member `member`.
    func scratch(_ step: ExecutionPlan.Step, member: Int) -> UnsafeMutablePointer<Float> {
        member == 0 ? buffers[step.scratch!] : memberScratch[member - 1]
    }

    /// Runs step `index` on every member of the team.
    fileprivate func share(step index: Int) {
        current = index
        team!.run(self)
    }

    func run(member: Int, of members: Int) {
        plan.run(plan.steps[current], self, active, part: member, of: members)
    }

    /// Bytes held by the arena.
    var byteCount: Int { max(1, plan.arenaSize * batch) * MemoryLayout<Float>.size }

    /// The input tensor (NHWC).
    var input: UnsafeMutablePointer<Float> { buffers[0] }
    func tensor(_ t: Int) -> UnsafeMutablePointer<Float> { buffers[t] }
}

extension ExecutionPlan {
    /// Runs every step over `ws.input` (NHWC, `ws.active` images).
    func forward(_ ws: Workspace, observe: StageObserver? = nil) {
        let n = ws.active
        let profile = ws.profile
        profile?.start(self)
        for (index, step) in steps.enumerated() {
            if index + 1 < steps.count {
                ws.touched += steps[index + 1].touchWeights()
                profile?.markReadAhead()
            }
            if ws.threads > 1 && step.splits {
                ws.share(step: index)
            } else {
                run(step, ws, n, part: 0, of: 1)
            }
            profile?.mark(index, images: n)
            if let observe, !step.reports.isEmpty {
                let s = shapes[step.output]
                let activation = nchw(ws.tensor(step.output), batch: n, height: s.height, width: s.width, channels: s.channels)
                for name in step.reports { observe(name, activation) }
            }
        }
    }

    /// Rows of a 1x1 convolution from which team members share its rows; below, its column
    /// panels (each member then reads only its part of the weights).
    static let rowSplitMinimum = 192
    /// Rows or pixels a member's part is a multiple of: whole tiles of either micro-kernel.
    static let splitAlignment = 12
    /// Floats of a depthwise output computed before its activation runs over them (half of L1).
    static let activationChunkFloats = 6144

    /// Runs part `part` of `parts` of one step: steps that ``Step/splits`` divide their output
    /// between the parts (each part computed exactly as a whole pass would, so any thread count
    /// gives the same floats); the others run whole, with one part.
    @inline(__always)
    fileprivate func run(_ step: Step, _ ws: Workspace, _ n: Int, part: Int, of parts: Int) {
        let out = ws.tensor(step.output)
        let o = shapes[step.output]
        switch step.work {
        case .convolution(let c):
            let rows = n * o.height * o.width
            let k = c.kernel * c.kernel * c.cin
            let a = UnsafePointer(ws.tensor(c.input))
            switch c.gemm {
            case .packed(let packed, let epilogue, let after):
                if let g = c.geometry {
                    // KxK (or strided / padded 1x1): direct, output pixels shared in whole tiles.
                    let pixels = share(rows, part: part, of: parts, align: Self.splitAlignment)
                    DenseConvolution.convolve(g.withBatch(n), input: a, weights: packed, output: out, accumulate: c.accumulate,
                                              epilogue: epilogue, scratch: ws.scratch(step, member: part), pixels: pixels)
                    if let after {
                        Elementwise.biasActivation(out + pixels.lowerBound * c.cout, rows: pixels.count, cols: c.cout, ld: c.cout,
                                                   bias: nil, activation: after)
                    }
                } else if parts == 1 || rows >= Self.rowSplitMinimum {
                    let r = share(rows, part: part, of: parts, align: Self.splitAlignment)
                    let c0 = out + r.lowerBound * c.cout
                    PackedGEMM.multiply(m: r.count, a: a + r.lowerBound * k, lda: k, b: packed, c: c0, ldc: c.cout,
                                        accumulate: c.accumulate, epilogue: epilogue)
                    if let after { Elementwise.biasActivation(c0, rows: r.count, cols: c.cout, ld: c.cout, bias: nil, activation: after) }
                } else {
                    // Few rows: each part takes whole pairs of panels (the AVX-512 tiles' width).
                    let panels = share(packed.panels, part: part, of: parts, align: 2)
                    PackedGEMM.multiply(m: rows, a: a, lda: k, b: packed, panels: panels, c: out, ldc: c.cout,
                                        accumulate: c.accumulate, epilogue: epilogue)
                    let w = PackedGEMM.panelWidth
                    let columns = min(c.cout, panels.lowerBound * w)..<min(c.cout, panels.upperBound * w)
                    if let after, !columns.isEmpty {
                        Elementwise.biasActivation(out + columns.lowerBound, rows: rows, cols: columns.count, ld: c.cout,
                                                   bias: nil, activation: after)
                    }
                }
            case .winograd(let weights, let epilogue):
                let g = c.geometry!.withBatch(n)
                Winograd.convolve(g, input: a, weights: weights, output: out, accumulate: c.accumulate, epilogue: epilogue,
                                  scratch: ws.scratch(step, member: part), tiles: share(Winograd.tileCount(g), part: part, of: parts))
            case .blas:
                GEMM.multiply(m: rows, n: c.cout, k: k, a: a, lda: k, b: c.weight, ldb: c.cout, c: out, ldc: c.cout, accumulate: c.accumulate)
                Elementwise.biasActivation(out, rows: rows, cols: c.cout, ld: c.cout, bias: c.bias, activation: c.activation)
            }
        case .depthwise(let d):
            var g = d.geometry
            g.batch = n
            if let pooled = d.pool {
                depthwisePooled(d, g, input: ws.tensor(d.input), output: out, o, pooled: ws.tensor(pooled),
                                lanes: share(g.channels, part: part, of: parts, align: 16))
                break
            }
            let rows = share(n * o.height, part: part, of: parts)
            if case .identity = d.activation {
                Depthwise.convolve(g, input: ws.tensor(d.input), weights: d.weight, bias: d.bias, output: out, rows: rows)
                break
            }
            // A few rows at a time, each chunk's activation applied while it is still in L1.
            let chunk = max(1, Self.activationChunkFloats / (o.width * o.channels))
            for first in stride(from: rows.lowerBound, to: rows.upperBound, by: chunk) {
                depthwiseRows(d, g, input: ws.tensor(d.input), output: out, o, rows: first..<min(rows.upperBound, first + chunk),
                              lanes: 0..<g.channels)
            }
        case .add(let a, let b):
            let count = n * o.count
            let (x, y) = (ws.tensor(a), ws.tensor(b))
            if out != x { out.update(from: x, count: count) }
            Elementwise.add(out, y, count: count)
        case .maximum(let a, let b):
            let count = n * o.count
            if out != ws.tensor(a) { out.update(from: ws.tensor(a), count: count) }
            Elementwise.maximum(out, ws.tensor(b), count: count)
        case .multiply(let a, let b):
            let count = n * o.count
            if out != ws.tensor(a) { out.update(from: ws.tensor(a), count: count) }
            Elementwise.multiply(out, by: ws.tensor(b), count: count)
        case .concatChannels(let inputs):
            var offset = 0
            for t in inputs {
                let c = shapes[t].channels
                let src = ws.tensor(t)
                for p in 0..<n * o.height * o.width {
                    (out + p * o.channels + offset).update(from: src + p * c, count: c)
                }
                offset += c
            }
        case .concatPositions(let inputs):
            var offset = 0
            for t in inputs {
                let size = shapes[t].count
                let src = ws.tensor(t)
                for b in 0..<n { (out + b * o.count + offset).update(from: src + b * size, count: size) }
                offset += size
            }
        case .resizeNearest(let t):
            let x = shapes[t]
            let src = ws.tensor(t)
            for b in 0..<n {
                for y in 0..<o.height {
                    let sy = y * x.height / o.height
                    for xx in 0..<o.width {
                        let sx = xx * x.width / o.width
                        (out + ((b * o.height + y) * o.width + xx) * o.channels)
                            .update(from: src + ((b * x.height + sy) * x.width + sx) * x.channels, count: x.channels)
                    }
                }
            }
        case .pooledByDepthwise:
            break
        case .coordinatePool(let t):
            let x = shapes[t]
            CoordinatePooling.pool(input: ws.tensor(t), batch: n, height: x.height, width: x.width, channels: x.channels, pooled: out,
                                   lanes: share(x.channels, part: part, of: parts, align: 8))
        case .attention(let a):
            attentionGates(a, pooled: ws.tensor(a.pooled), gates: out, hidden: ws.buffers[step.scratch!],
                           positions: share(n * (a.rows + a.columns), part: part, of: parts, align: Self.splitAlignment))
        case .gate(let x, let gates):
            let s = shapes[x]
            CoordinatePooling.gate(out, batch: n, height: s.height, width: s.width, channels: s.channels, gates: ws.tensor(gates),
                                   rows: share(n * s.height, part: part, of: parts))
        case .gateMap(let gates):
            out.update(repeating: 1, count: n * o.count)
            CoordinatePooling.gate(out, batch: n, height: o.height, width: o.width, channels: o.channels, gates: ws.tensor(gates))
        case .adaptivePool(let t):
            adaptiveAveragePool(ws.tensor(t), shapes[t], out, o, batch: n)
        case .channelConvolution(let c):
            let x = shapes[c.input]
            let length = x.channels - c.kernel + 1
            let src = ws.tensor(c.input)
            // Q[o][t] = bias[o] + sum_p sum_k w[o][p][k] * P[t+k][p];  v[outputs * t + o] = Q[o][t].
            for b in 0..<n {
                let pb = src + b * x.count
                for t in 0..<length {
                    for oc in 0..<c.outputs {
                        var sum = c.bias[oc]
                        for p in 0..<c.positions {
                            for k in 0..<c.kernel { sum += c.weight[(oc * c.positions + p) * c.kernel + k] * pb[p * x.channels + t + k] }
                        }
                        out[b * o.count + c.outputs * t + oc] = sum
                    }
                }
            }
        case .softmax(let t, let group):
            if out != ws.tensor(t) { out.update(from: ws.tensor(t), count: n * o.count) }
            Elementwise.softmax(out, rows: n * o.count / group, cols: group)
        case .l2Normalize:
            Elementwise.l2Normalize(out, rows: n * o.height * o.width, cols: o.channels)
        }
    }

    /// A depthwise step that also pools its output for coordinate attention: each image a few
    /// rows at a time, the rows pooled (``CoordinatePooling/accumulate(image:height:width:channels:pooled:lines:lanes:)``)
    /// while they are still in L1. Threads share the channels (`lanes`, within the step's), not
    /// the rows, so every column sum adds its rows in the same order whatever the thread count.
    private func depthwisePooled(
        _ d: DepthwiseStep, _ g: DepthwiseGeometry, input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
        _ o: ActivationShape, pooled: UnsafeMutablePointer<Float>, lanes: Range<Int>
    ) {
        guard !lanes.isEmpty else { return }
        let absolute = g.channelOffset + lanes.lowerBound..<g.channelOffset + lanes.upperBound
        let chunk = max(1, Self.activationChunkFloats / (o.width * o.channels))
        for b in 0..<g.batch {
            for first in stride(from: 0, to: o.height, by: chunk) {
                let lines = first..<min(o.height, first + chunk)
                depthwiseRows(d, g, input: input, output: output, o, rows: b * o.height + first..<b * o.height + lines.upperBound, lanes: lanes)
                CoordinatePooling.accumulate(image: output + b * o.count, height: o.height, width: o.width, channels: o.channels,
                                             pooled: pooled + b * (o.height + o.width) * o.channels, lines: lines, lanes: absolute)
            }
        }
    }

    /// Output rows `rows` (numbered over the batch) of a depthwise step for its channels
    /// `lanes`, then its activation over them while they are in L1.
    private func depthwiseRows(
        _ d: DepthwiseStep, _ g: DepthwiseGeometry, input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
        _ o: ActivationShape, rows: Range<Int>, lanes: Range<Int>
    ) {
        Depthwise.convolve(g, input: input, weights: d.weight, bias: d.bias, output: output, rows: rows, lanes: lanes)
        if case .identity = d.activation { return }
        Elementwise.biasActivation(output + rows.lowerBound * o.width * o.channels + g.channelOffset + lanes.lowerBound,
                                   rows: rows.count * o.width, cols: lanes.count, ld: o.channels, bias: nil,
                                   activation: d.activation.channels(from: lanes.lowerBound))
    }

    /// Turns pooled rows and columns `(batch, h + w, c)` into gates: conv1 + h_swish, then conv2 +
    /// sigmoid on the rows and conv3 + sigmoid on the columns. Each position depends on its own
    /// pooled values only, so threads share the positions (`range`, numbered over the batch).
    private func attentionGates(
        _ a: AttentionStep, pooled: UnsafeMutablePointer<Float>, gates: UnsafeMutablePointer<Float>,
        hidden: UnsafeMutablePointer<Float>, positions range: Range<Int>
    ) {
        let (h, w, c, mip) = (a.rows, a.columns, a.channels, a.hidden)
        let positions = h + w, first = range.lowerBound
        // Biases in the products' epilogues; h_swish and sigmoid as second passes.
        PackedGEMM.multiply(m: range.count, a: pooled + first * c, lda: c, b: a.conv1, c: hidden + first * mip, ldc: mip,
                            accumulate: false, epilogue: .identity)
        Elementwise.biasActivation(hidden + first * mip, rows: range.count, cols: mip, ld: mip, bias: nil, activation: .hardSwish)
        func project(_ part: Range<Int>, _ weights: PackedWeights) {
            PackedGEMM.multiply(m: part.count, a: hidden + part.lowerBound * mip, lda: mip, b: weights,
                                c: gates + part.lowerBound * c, ldc: c, accumulate: false, epilogue: .identity)
        }
        for b in first / positions..<(range.upperBound + positions - 1) / positions {
            project(range.clamped(to: b * positions..<b * positions + h), a.conv2)
            project(range.clamped(to: b * positions + h..<(b + 1) * positions), a.conv3)
        }
        Elementwise.biasActivation(gates + first * c, rows: range.count, cols: c, ld: c, bias: nil, activation: .sigmoid)
    }

    /// PyTorch's adaptive windows: output i of n over length L averages [floor(i*L/n), ceil((i+1)*L/n)).
    private func adaptiveAveragePool(
        _ src: UnsafeMutablePointer<Float>, _ x: ActivationShape, _ out: UnsafeMutablePointer<Float>, _ o: ActivationShape, batch n: Int
    ) {
        let c = x.channels
        for b in 0..<n {
            for py in 0..<o.height {
                let (y0, y1) = (py * x.height / o.height, ((py + 1) * x.height + o.height - 1) / o.height)
                for px in 0..<o.width {
                    let (x0, x1) = (px * x.width / o.width, ((px + 1) * x.width + o.width - 1) / o.width)
                    let dst = out + ((b * o.height + py) * o.width + px) * c
                    let scale = 1 / Float((y1 - y0) * (x1 - x0))
                    for ch in 0..<c {
                        var sum: Float = 0
                        for y in y0..<y1 { for xx in x0..<x1 { sum += src[((b * x.height + y) * x.width + xx) * c + ch] } }
                        dst[ch] = sum * scale
                    }
                }
            }
        }
    }
}

extension ExecutionPlan {
    /// The multiply-accumulates one step's kernels do for one image: ``multiplyAccumulates(_:)``,
    /// except for a Winograd convolution, whose products take 36 per 4x4 tile, input and output
    /// channel (its transforms, mostly additions, are not counted).
    func executedMultiplyAccumulates(_ step: Step) -> Int {
        if case .convolution(let c) = step.work, case .winograd = c.gemm, let g = c.geometry {
            return Winograd.multiplyAccumulates(g)
        }
        return multiplyAccumulates(step)
    }

    /// Multiply-accumulates of one step for one image: the convolutions' and linear layers'
    /// products (as fvcore counts them), depthwise taps and coordinate attention's three products;
    /// zero for the rest.
    func multiplyAccumulates(_ step: Step) -> Int {
        let o = shapes[step.output]
        switch step.work {
        case .convolution(let c): return o.height * o.width * c.kernel * c.kernel * c.cin * c.cout
        case .depthwise(let d):
            return o.height * o.width * d.geometry.channels * d.geometry.kernelHeight * d.geometry.kernelWidth
        case .attention(let a): return (a.rows + a.columns) * 2 * a.channels * a.hidden
        case .channelConvolution(let c): return (shapes[c.input].channels - c.kernel + 1) * c.outputs * c.positions * c.kernel
        default: return 0
        }
    }
}

extension ExecutionPlan.Step {
    /// Reads this step's packed weights into the cache (``PackedWeights/touch()``); the pass does
    /// it one step ahead, so they arrive while the step before runs.
    func touchWeights() -> Float {
        switch work {
        case .convolution(let c):
            switch c.gemm {
            case .packed(let w, _, _): return w.touch()
            case .winograd(let w, _): return w.touch()
            case .blas: return 0
            }
        case .attention(let a): return a.conv1.touch() + a.conv2.touch() + a.conv3.touch()
        default: return 0
        }
    }

    /// Whether a team shares this step (the convolutions and coordinate attention, nearly all of a
    /// pass's time); the rest run on the calling thread.
    var splits: Bool {
        switch work {
        case .convolution(let c):
            if case .blas = c.gemm { return false }
            return true
        case .depthwise, .coordinatePool, .attention, .gate: return true
        default: return false
        }
    }
}

/// NHWC activations as an NCHW tensor.
func nchw(_ data: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int) -> Tensor {
    let count = batch * channels * height * width
    let out = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        ChannelOrder.toChannelsFirst(data, buffer.baseAddress!, batch: batch, channels: channels, positions: height * width)
        initialized = count
    }
    return Tensor(shape: [batch, channels, height, width], data: out)
}
