import FERKernels
import FERTensor

/// Called with each stage's activation (NCHW, the whole batch) when debugging a forward pass.
typealias StageObserver = (_ name: String, _ activation: Tensor) -> Void

extension Network {
    /// Runs the network on `workspace.input` (NHWC, already normalised), filling the workspace's
    /// outputs, feature map and pooled features.
    func forward(_ ws: Workspace, observe: StageObserver? = nil) {
        let n = ws.active
        var (h, w) = (Network.inputSize, Network.inputSize)
        var x = ws.a, spare = ws.b

        let profile = ws.profile
        profile?.start()
        // The name is only built when someone observes: this runs on every forward pass.
        func report(_ name: @autoclosure () -> String, _ data: UnsafePointer<Float>, _ h: Int, _ w: Int, _ c: Int) {
            guard let observe else { return }
            observe(name(), nchw(data, batch: n, height: h, width: w, channels: c))
        }

        // Stage 0: dense 3x3 stride 2 via im2col + GEMM.
        let s0 = stem
        let (k0, pad0) = (s0.kernel, s0.kernel / 2)
        let (oh0, ow0) = (Im2col.outputSize(h, kernel: k0, stride: s0.stride, pad: pad0), Im2col.outputSize(w, kernel: k0, stride: s0.stride, pad: pad0))
        Im2col.lower(input: ws.input, batch: n, height: h, width: w, channels: s0.cin, kernel: k0, stride: s0.stride, pad: pad0, columns: ws.columns)
        GEMM.multiply(m: n * oh0 * ow0, n: s0.cout, k: k0 * k0 * s0.cin, a: ws.columns, lda: k0 * k0 * s0.cin,
                      b: s0.weight, ldb: s0.cout, c: x, ldc: s0.cout)
        Elementwise.biasActivation(x, rows: n * oh0 * ow0, cols: s0.cout, ld: s0.cout, bias: s0.bias,
                                   activation: s0.slope.map { .prelu($0) } ?? .identity)
        (h, w) = (oh0, ow0)
        var channels = s0.cout
        profile?.mark(architecture.stagePrefix(0), "im2col + GEMM")
        report(architecture.stagePrefix(0), x, h, w, channels)

        // Stage 1: 3x3 depthwise.
        depthwise(stage1, input: x, output: spare, batch: n, height: h, width: w, stride: 1, padded: true)
        swap(&x, &spare)
        profile?.mark(architecture.stagePrefix(1), "depthwise")
        report(architecture.stagePrefix(1), x, h, w, channels)

        // Stages 2-7: MixBlocks.
        for (i, block) in blocks.enumerated() {
            let (oh, ow) = runMixBlock(block, x: x, out: spare, ws: ws, height: h, width: w)
            if !block.residual { swap(&x, &spare) }
            (h, w) = (oh, ow)
            channels = block.project.cout
            if observe != nil && (i + 1 == blocks.count || blocks[i + 1].stage != block.stage) {
                report(architecture.stagePrefix(block.stage), x, h, w, channels)
            }
        }

        // Stage 8.
        if let dw = stage8.depthwise {
            depthwise(dw, input: x, output: spare, batch: n, height: h, width: w, stride: 1, padded: true)
            swap(&x, &spare)
        } else if let pw = stage8.pointwise {
            GEMM.multiply(m: n * h * w, n: pw.cout, k: pw.cin, a: x, lda: pw.cin, b: pw.weight, ldb: pw.cout, c: spare, ldc: pw.cout)
            Elementwise.biasActivation(spare, rows: n * h * w, cols: pw.cout, ld: pw.cout, bias: pw.bias,
                                       activation: pw.slope.map { .prelu($0) } ?? .identity)
            swap(&x, &spare)
            channels = pw.cout
        }
        profile?.mark(architecture.stagePrefix(8), stage8.depthwise == nil ? "1x1 GEMM" : "depthwise")
        report(architecture.stagePrefix(8), x, h, w, channels)

        // Feature map (NCHW, as PyTorch returns it) and its global average.
        let hw = h * w
        for b in 0..<n {
            for c in 0..<channels {
                var sum: Float = 0
                for p in 0..<hw {
                    let v = x[(b * hw + p) * channels + c]
                    ws.featureMap[(b * channels + c) * hw + p] = v
                    sum += v
                }
                ws.pooledFeatures[b * channels + c] = sum / Float(hw)
            }
        }

        switch head {
        case .spatialBias(let reduce, let conv, let convBias, let fc):
            spatialBias(x: x, ws: ws, height: h, width: w, reduce: reduce, conv: conv, convBias: convBias, fc: fc, report: { report($0, $1, $2, $3, $4) })
        case .embedding(let dw, let linear):
            depthwise(dw, input: x, output: ws.headA, batch: n, height: h, width: w, stride: 1, padded: false)
            report("conv_6_dw", ws.headA, 1, 1, channels)
            GEMM.multiply(m: n, n: linear.cout, k: linear.cin, a: ws.headA, lda: linear.cin, b: linear.weight, ldb: linear.cout,
                          c: ws.outputs, ldc: linear.cout)
            Elementwise.biasActivation(ws.outputs, rows: n, cols: linear.cout, ld: linear.cout, bias: linear.bias, activation: .identity)
            report("bn", ws.outputs, 1, 1, linear.cout)
            Elementwise.l2Normalize(ws.outputs, rows: n, cols: linear.cout)
        case .ddam(let heads, let pool, let fc):
            ddam(x: x, ws: ws, height: h, width: w, heads: heads, pool: pool, fc: fc, report: { report($0, $1, $2, $3, $4) })
        }
        profile?.mark("head", "feature map copy")
        if architecture.classCount != nil {
            ws.probabilities.update(from: ws.outputs, count: n * outputWidth)
            Elementwise.softmax(ws.probabilities, rows: n, cols: outputWidth)
        }
        profile?.mark("head", "\(architecture.family) head")
    }

    /// expand (1x1 + PReLU) -> mixed depthwise -> coordinate attention -> project (1x1) [+ input].
    /// Residual blocks add into `x` in place; others write `out`. Returns the output size.
    private func runMixBlock(
        _ block: MixBlock, x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, ws: Workspace, height h: Int, width w: Int
    ) -> (Int, Int) {
        let n = ws.active
        let e = block.expand
        let profile = ws.profile
        GEMM.multiply(m: n * h * w, n: e.cout, k: e.cin, a: x, lda: e.cin, b: e.weight, ldb: e.cout, c: ws.expanded, ldc: e.cout)
        Elementwise.biasActivation(ws.expanded, rows: n * h * w, cols: e.cout, ld: e.cout, bias: e.bias,
                                   activation: e.slope.map { .prelu($0) } ?? .identity)
        profile?.mark(architecture.stagePrefix(block.stage), "expand 1x1 GEMM + PReLU")
        var offset = 0
        var (oh, ow) = (h, w)
        for group in block.groups {
            let g = DepthwiseGeometry.square(
                batch: n, height: h, width: w, channelStride: e.cout, channelOffset: offset, channels: group.channels,
                kernel: group.kernelHeight, stride: block.stride)
            Depthwise.convolve(g, input: ws.expanded, weights: group.weight, bias: group.bias, output: ws.depthwise)
            (oh, ow) = (g.outHeight, g.outWidth)
            offset += group.channels
        }
        profile?.mark(architecture.stagePrefix(block.stage), "mixed depthwise")
        CoordinatePooling.pool(input: ws.depthwise, batch: n, height: oh, width: ow, channels: e.cout, pooled: ws.pooled)
        attentionGates(block.attention, ws: ws, height: oh, width: ow)
        CoordinatePooling.gate(ws.depthwise, batch: n, height: oh, width: ow, channels: e.cout, gates: ws.pooled)
        profile?.mark(architecture.stagePrefix(block.stage), "coordinate attention")
        let p = block.project
        let target = block.residual ? x : out
        GEMM.multiply(m: n * oh * ow, n: p.cout, k: p.cin, a: ws.depthwise, lda: p.cin, b: p.weight, ldb: p.cout,
                      c: target, ldc: p.cout, accumulate: block.residual)
        Elementwise.biasActivation(target, rows: n * oh * ow, cols: p.cout, ld: p.cout, bias: p.bias, activation: .identity)
        profile?.mark(architecture.stagePrefix(block.stage), "project 1x1 GEMM")
        return (oh, ow)
    }

    /// Turns `ws.pooled` (batch, h + w, channels) into gates in place: conv1 + h_swish over all
    /// positions, then conv2 + sigmoid on the h row positions and conv3 + sigmoid on the w column ones.
    private func attentionGates(_ att: Attention, ws: Workspace, height h: Int, width w: Int) {
        let n = ws.active, positions = h + w
        let c1 = att.conv1
        GEMM.multiply(m: n * positions, n: c1.cout, k: c1.cin, a: ws.pooled, lda: c1.cin, b: c1.weight, ldb: c1.cout,
                      c: ws.hidden, ldc: c1.cout)
        Elementwise.biasActivation(ws.hidden, rows: n * positions, cols: c1.cout, ld: c1.cout, bias: c1.bias, activation: .hardSwish)
        let channels = att.conv2.cout
        for b in 0..<n {
            let hid = ws.hidden + b * positions * c1.cout
            let gates = ws.pooled + b * positions * channels
            GEMM.multiply(m: h, n: channels, k: c1.cout, a: hid, lda: c1.cout, b: att.conv2.weight, ldb: channels, c: gates, ldc: channels)
            Elementwise.biasActivation(gates, rows: h, cols: channels, ld: channels, bias: att.conv2.bias, activation: .sigmoid)
            GEMM.multiply(m: w, n: channels, k: c1.cout, a: hid + h * c1.cout, lda: c1.cout, b: att.conv3.weight, ldb: channels,
                          c: gates + h * channels, ldc: channels)
            Elementwise.biasActivation(gates + h * channels, rows: w, cols: channels, ld: channels, bias: att.conv3.bias, activation: .sigmoid)
        }
    }

    private func depthwise(
        _ layer: DepthwiseLayer, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
        batch: Int, height: Int, width: Int, stride: Int, padded: Bool
    ) {
        let g = DepthwiseGeometry(
            batch: batch, height: height, width: width, channelStride: layer.channels, channels: layer.channels,
            kernelHeight: layer.kernelHeight, kernelWidth: layer.kernelWidth, stride: stride,
            padTop: padded ? layer.kernelHeight / 2 : 0, padLeft: padded ? layer.kernelWidth / 2 : 0)
        Depthwise.convolve(g, input: input, weights: layer.weight, bias: layer.bias, output: output)
        if let slope = layer.slope {
            Elementwise.biasActivation(output, rows: batch * g.outHeight * g.outWidth, cols: layer.channels, ld: layer.channels,
                                       bias: nil, activation: .prelu(slope))
        }
    }

    /// Spatial Bias: 1x1 reduce + ReLU, overlapping 2x2 adaptive average pool, Conv1d across
    /// channels, rearranged to `v[4t + o]`, then the classifier.
    private func spatialBias(
        x: UnsafePointer<Float>, ws: Workspace, height h: Int, width w: Int, reduce: Pointwise,
        conv: UnsafePointer<Float>, convBias: UnsafePointer<Float>, fc: Pointwise,
        report: (String, UnsafePointer<Float>, Int, Int, Int) -> Void
    ) {
        let n = ws.active, r = reduce.cout, length = r - 2
        GEMM.multiply(m: n * h * w, n: r, k: reduce.cin, a: x, lda: reduce.cin, b: reduce.weight, ldb: r, c: ws.headA, ldc: r)
        Elementwise.biasActivation(ws.headA, rows: n * h * w, cols: r, ld: r, bias: reduce.bias, activation: .relu)
        report("sb.feature_reduction", ws.headA, h, w, r)
        // AdaptiveAvgPool2d(2): window i of 2 over L is [floor(i*L/2), ceil((i+1)*L/2)).
        let pooled = ws.headB  // (batch, 2, 2, r) NHWC
        for b in 0..<n {
            for py in 0..<2 {
                let (y0, y1) = (py * h / 2, ((py + 1) * h + 1) / 2)
                for px in 0..<2 {
                    let (x0, x1) = (px * w / 2, ((px + 1) * w + 1) / 2)
                    let dst = pooled + ((b * 2 + py) * 2 + px) * r
                    let scale = 1 / Float((y1 - y0) * (x1 - x0))
                    for c in 0..<r {
                        var sum: Float = 0
                        for y in y0..<y1 { for xx in x0..<x1 { sum += ws.headA[((b * h + y) * w + xx) * r + c] } }
                        dst[c] = sum * scale
                    }
                }
            }
        }
        report("sb.pool", pooled, 2, 2, r)
        // Conv1d: Q[o][t] = bias[o] + sum_p sum_k w[o][p][k] * P[t+k][p]; v[4t + o] = Q[o][t].
        let v = ws.headA
        for b in 0..<n {
            let pb = pooled + b * 4 * r
            for t in 0..<length {
                for o in 0..<4 {
                    var sum = convBias[o]
                    for p in 0..<4 {
                        for k in 0..<3 { sum += conv[(o * 4 + p) * 3 + k] * pb[p * r + t + k] }
                    }
                    v[b * 4 * length + 4 * t + o] = sum
                }
            }
        }
        // As PyTorch's Conv1d output Q (batch, 4, length), then as the flattened vector v.
        report("sb.sb_conv", v, 1, length, 4)
        report("sb", v, 1, 1, 4 * length)
        GEMM.multiply(m: n, n: fc.cout, k: fc.cin, a: v, lda: fc.cin, b: fc.weight, ldb: fc.cout, c: ws.outputs, ldc: fc.cout)
        Elementwise.biasActivation(ws.outputs, rows: n, cols: fc.cout, ld: fc.cout, bias: fc.bias, activation: .identity)
        report("fc", ws.outputs, 1, 1, fc.cout)
    }

    /// DDAMNet: each head's directional convolutions feed coordinate-attention gates; the maximum
    /// over heads multiplies the feature map, a 7x7 depthwise pools it and `fc` classifies.
    private func ddam(
        x: UnsafePointer<Float>, ws: Workspace, height h: Int, width w: Int,
        heads: [(h: DepthwiseLayer, w: DepthwiseLayer, attention: Attention)], pool: DepthwiseLayer, fc: Pointwise,
        report: (String, UnsafePointer<Float>, Int, Int, Int) -> Void
    ) {
        let n = ws.active, c = featureChannels, hw = h * w
        let attentionMap = ws.headA, headMap = ws.headB
        for (i, head) in heads.enumerated() {
            // pooled[b] = (Linear_h over x: h rows) then (Linear_w over y: w columns), (h + w, c).
            for b in 0..<n {
                let image = x + b * hw * c
                let dst = ws.pooled + b * (h + w) * c
                depthwise(head.h, input: image, output: dst, batch: 1, height: h, width: w, stride: 1, padded: false)
                depthwise(head.w, input: image, output: dst + h * c, batch: 1, height: h, width: w, stride: 1, padded: false)
            }
            attentionGates(head.attention, ws: ws, height: h, width: w)
            let target = i == 0 ? attentionMap : headMap
            target.update(repeating: 1, count: n * hw * c)
            CoordinatePooling.gate(target, batch: n, height: h, width: w, channels: c, gates: ws.pooled)
            report("cat_head\(i)", target, h, w, c)
            if i > 0 { Elementwise.maximum(attentionMap, headMap, count: n * hw * c) }
        }
        Elementwise.multiply(attentionMap, by: x, count: n * hw * c)
        report("attended", attentionMap, h, w, c)
        depthwise(pool, input: attentionMap, output: headMap, batch: n, height: h, width: w, stride: 1, padded: false)
        report("Linear", headMap, 1, 1, c)
        GEMM.multiply(m: n, n: fc.cout, k: fc.cin, a: headMap, lda: fc.cin, b: fc.weight, ldb: fc.cout, c: ws.outputs, ldc: fc.cout)
        Elementwise.biasActivation(ws.outputs, rows: n, cols: fc.cout, ld: fc.cout, bias: fc.bias, activation: .identity)
        report("fc", ws.outputs, 1, 1, fc.cout)
    }
}

/// Copies an NHWC buffer into an NCHW tensor.
func nchw(_ data: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int) -> Tensor {
    var out = [Float](repeating: 0, count: batch * height * width * channels)
    let hw = height * width
    for b in 0..<batch {
        for p in 0..<hw {
            for c in 0..<channels { out[(b * channels + c) * hw + p] = data[(b * hw + p) * channels + c] }
        }
    }
    return Tensor(shape: [batch, channels, height, width], data: out)
}
