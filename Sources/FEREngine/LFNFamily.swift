import FERKernels
import FERTensor

/// Graph builder for LFNSB, LFN, MFN and DDAMNet: the LFN or MixedFeatureNet backbone and each
/// model's head (models.md sections 1-3).
///
/// Only the topology is written here: stage order, strides, which stages repeat a residual
/// block, where PReLUs and BatchNorms sit. Widths, block counts, kernel sizes, attention widths,
/// class and head counts are read from the checkpoint.
import FERTensor

enum LFNFamily {
    static func build(_ architecture: Architecture, _ raw: RawWeights) throws -> (ModelGraph, FoldedParameters) {
        var b = GraphBuilder(raw: raw, architecture: architecture)
        let mfn = architecture.usesMFNBackbone
        var x = 0, channels = 3

        // Stage 0: dense conv, stride 2, + BN (+ PReLU in MFN).
        let p0 = architecture.stagePrefix(0)
        b.stage = p0
        (x, channels) = try b.convolution(x, channels: channels, module: mfn ? "\(p0).conv" : "\(p0).c", batchNorm: "\(p0).bn",
                                          prelu: mfn ? "\(p0).prelu" : nil, stride: 2, name: "features.0")
        b.report(p0)
        // Stage 1: depthwise + BN (+ PReLU).
        let p1 = architecture.stagePrefix(1)
        b.stage = p1
        (x, channels) = try b.convolution(x, channels: channels, module: mfn ? "\(p1).conv" : "\(p1).c", batchNorm: "\(p1).bn",
                                          prelu: mfn ? "\(p1).prelu" : nil, depthwise: true, name: "features.1")
        b.report(p1)
        // Stages 2-7: a stride-2 MixBlock, then a stage of residual MixBlocks `model.J`.
        for stage in 2...7 {
            let p = architecture.stagePrefix(stage)
            b.stage = p
            if stage % 2 == 0 {
                (x, channels) = try mixBlock(&b, x, channels, module: p, name: "features.\(stage)", stride: 2, residual: false, mfn: mfn)
            } else {
                var j = 0
                while b.raw.contains("\(p).model.\(j).conv.conv.weight") {
                    (x, channels) = try mixBlock(&b, x, channels, module: "\(p).model.\(j)", name: "features.\(stage).\(j)",
                                                 stride: 1, residual: true, mfn: mfn)
                    j += 1
                }
                if j == 0 { _ = try b.raw.take("\(p).model.0.conv.conv.weight", [1]) }  // reported as missing
            }
            b.report(p)
        }
        // Stage 8: MFN's 1x1 conv + BN + PReLU, or LFN's RepVGGDW folded into one depthwise 3x3.
        let p8 = architecture.stagePrefix(8)
        b.stage = p8
        if mfn {
            (x, channels) = try b.convolution(x, channels: channels, module: "\(p8).conv", batchNorm: "\(p8).bn", prelu: "\(p8).prelu",
                                              kernel: (1, 1), name: "features.8")
        } else {
            x = try repVGGDW(&b, x, channels, module: p8)
        }
        b.report(p8)
        let featureMap = x
        b.outputs.append(GraphOutput(name: "featureMap", tensor: featureMap, layout: .map, optional: true))

        switch architecture {
        case .lfnsb:
            // Spatial Bias: 1x1 reduce + BN + ReLU, 2x2 adaptive pool, Conv1d across channels, fc.
            b.stage = "sb"
            let (r, reduced) = try b.convolution(x, channels: channels, module: "sb.feature_reduction.0", batchNorm: "sb.feature_reduction.1",
                                                 activation: .relu, kernel: (1, 1), name: "sb.reduce")
            b.report("sb.feature_reduction")
            let pooled = b.append(.adaptiveAveragePool(height: 2, width: 2), [r], sources: [
                Source(name: "sb.pool", kind: .adaptivePool, parameters: 0)])
            b.report("sb.pool")
            let convShape = b.raw.shape("sb.sb_conv.weight") ?? []
            let (outs, k) = convShape.count == 3 ? (convShape[0], convShape[2]) : (4, 3)
            let w = try b.raw.take("sb.sb_conv.weight", [outs, 4, k])
            b.folded.set("sb.conv.weight", shape: [outs, 4, k], w)
            b.folded.set("sb.conv.bias", shape: [outs], try b.raw.take("sb.sb_conv.bias", [outs]))
            let v = b.append(.channelConvolution(ChannelConvolution(weight: "sb.conv.weight", bias: "sb.conv.bias")), [pooled], sources: [
                Source(name: "sb.sb_conv", kind: .convolution(macsPerOutput: 4 * k), parameters: outs * 4 * k + outs)])
            b.report("sb")
            b.stage = "fc"
            let (logits, classes) = try b.linear(v, channels: outs * (reduced - k + 1), module: "fc", bias: true, name: "fc")
            b.report("fc")
            classifierOutputs(&b, logits, classes: classes)
        case .lfn, .mfn:
            b.stage = "embedding"
            let (d, _) = try b.convolution(x, channels: channels, module: "conv_6_dw.conv", batchNorm: "conv_6_dw.bn", depthwise: true,
                                           padding: 0, name: "embed.dw")
            b.report("conv_6_dw")
            let (e, _) = try b.linear(d, channels: channels, module: "linear", bias: false, batchNorm: "bn", name: "embed.linear")
            b.report("bn")
            b.append(.l2Normalize, [e], output: e)
            b.outputs.append(GraphOutput(name: "embedding", tensor: e, layout: .vector, optional: false))
        case .ddamnet(_, let heads):
            var attention = 0
            for i in 0..<heads {
                let p = "cat_head\(i).CoordAtt"
                b.stage = "cat_head\(i)"
                let (h, _) = try b.convolution(x, channels: channels, module: "\(p).Linear_h.conv", batchNorm: "\(p).Linear_h.bn",
                                               depthwise: true, padding: 0, name: "heads.\(i).h")
                let (w, _) = try b.convolution(x, channels: channels, module: "\(p).Linear_w.conv", batchNorm: "\(p).Linear_w.bn",
                                               depthwise: true, padding: 0, name: "heads.\(i).w")
                let pooled = b.append(.concatPositions, [h, w])
                let gates = try b.attentionGates(pooled: pooled, map: x, channels: channels, module: p, name: "heads.\(i)")
                let map = b.append(.gateMap, [gates, x])
                b.report("cat_head\(i)")
                if i == 0 { attention = map } else { b.append(.maximum, [attention, map], output: attention) }
                b.ignoreUnused(prefix: "\(p).Linear.", as: "\(p).Linear (unused)")
            }
            b.stage = "Linear"
            b.append(.multiply, [attention, x], output: attention)
            b.report("attended")
            let (pooled, _) = try b.convolution(attention, channels: channels, module: "Linear.conv", batchNorm: "Linear.bn", depthwise: true,
                                                padding: 0, name: "pool")
            b.report("Linear")
            b.stage = "fc"
            let (logits, classes) = try b.linear(pooled, channels: channels, module: "fc", bias: true, name: "fc")
            b.report("fc")
            classifierOutputs(&b, logits, classes: classes)
        case .retinaFace:
            preconditionFailure("RetinaFace has its own builder")
        }
        try b.raw.finish(architecture)
        return (b.graph(inputChannels: ModelInput.channels, inputSize: ModelInput.size), b.folded)
    }

    /// Logits, their softmax, and the published-but-unused BatchNorm1d `bn`.
    private static func classifierOutputs(_ b: inout GraphBuilder, _ logits: Int, classes: Int) {
        let probabilities = b.append(.softmax(group: max(classes, 1)), [logits])
        b.outputs.append(GraphOutput(name: "logits", tensor: logits, layout: .vector, optional: false))
        b.outputs.append(GraphOutput(name: "probabilities", tensor: probabilities, layout: .vector, optional: false))
        b.ignoreUnused(prefix: "bn.", as: "bn (unused)")
    }

    /// expand (1x1 + BN + PReLU) -> mixed depthwise -> coordinate attention -> project (1x1 + BN)
    /// [+ input]. Returns the block's output tensor and channels.
    private static func mixBlock(
        _ b: inout GraphBuilder, _ x: Int, _ cin: Int, module p: String, name: String, stride: Int, residual: Bool, mfn: Bool
    ) throws -> (Int, Int) {
        let (e, width) = try b.convolution(x, channels: cin, module: "\(p).conv.conv", batchNorm: "\(p).conv.bn", prelu: "\(p).conv.prelu",
                                           kernel: (1, 1), name: "\(name).expand")
        // Mixed depthwise: groups over consecutive channel ranges, all written into one tensor.
        let dw = b.newTensor()
        var group = 0, covered = 0
        while let shape = b.raw.shape("\(p).conv_dw.mixed_depthwise_conv.\(group).weight"), shape.count == 4, covered < width {
            let (split, k) = (shape[0], shape[2])
            let key = "\(p).conv_dw.mixed_depthwise_conv.\(group)"
            let w = try b.raw.take("\(key).weight", [min(split, width - covered), 1, k, k])
            let channels = min(split, width - covered)
            b.folded.set("\(name).dw.\(group).weight", shape: [k, k, channels],
                         Depthwise.pack(torchWeight: w, channels: channels, kernelHeight: k, kernelWidth: k))
            b.append(.depthwise(DepthwiseConvolution(
                kernelHeight: k, kernelWidth: k, stride: stride, padTop: k / 2, padLeft: k / 2, channelOffset: covered, channels: channels,
                weight: "\(name).dw.\(group).weight", bias: nil, activation: .identity, slope: nil)),
                [e], output: dw, sources: [Source(name: key, kind: .convolution(macsPerOutput: k * k), parameters: split * k * k)])
            covered += channels
            group += 1
        }
        if covered != width {
            // Reported through the strict loader as a shape problem on the next group.
            _ = try b.raw.take("\(p).conv_dw.mixed_depthwise_conv.\(group).weight", [width - covered, 1, 3, 3])
        }
        if mfn {
            b.ignoreUnused(prefix: "\(p).conv_dw.bn.", as: "\(p).conv_dw.bn (unused)")
            b.ignoreUnused(prefix: "\(p).conv_dw.prelu.", as: "\(p).conv_dw.prelu (unused)")
        }
        let pooled = b.append(.coordinatePool, [dw], sources: [
            Source(name: "\(p).CA.pool_h", kind: .adaptivePool, parameters: 0), Source(name: "\(p).CA.pool_w", kind: .adaptivePool, parameters: 0)])
        let gates = try b.attentionGates(pooled: pooled, map: dw, channels: width, module: "\(p).CA", name: "\(name).ca")
        b.append(.gate, [dw, gates], output: dw)
        let projectShape = b.raw.shape("\(p).project.conv.weight") ?? []
        if residual && projectShape.first != nil && projectShape.first != cin {
            _ = try b.raw.take("\(p).project.conv.weight", [cin, width, 1, 1])  // a residual block keeps its width
            return (x, cin)
        }
        return try b.convolution(dw, channels: width, module: "\(p).project.conv", batchNorm: "\(p).project.bn", kernel: (1, 1),
                                 name: "\(name).project", output: residual ? x : nil, accumulate: residual)
    }

    /// RepVGGDW: BN_outer(BN_inner(dw3x3(x)) + dw1x1(x) + x) as one depthwise 3x3 with bias.
    private static func repVGGDW(_ b: inout GraphBuilder, _ x: Int, _ channels: Int, module p: String) throws -> Int {
        let k = b.raw.shape("\(p).conv.c.weight").flatMap { $0.count == 4 ? $0[2] : nil } ?? 3
        guard k >= 1 else { throw EngineError.unusableTensor(name: "\(p).conv.c.weight", reason: "a kernel of size 0") }
        var w = try b.raw.take("\(p).conv.c.weight", [channels, 1, k, k])
        let inner = try b.raw.batchNorm("\(p).conv.bn", channels: channels)
        let w1 = try b.raw.take("\(p).conv1.weight", [channels, 1, 1, 1])
        let b1 = try b.raw.take("\(p).conv1.bias", [channels])
        let outer = try b.raw.batchNorm("\(p).bn", channels: channels)
        let taps = k * k, centre = (k / 2) * k + k / 2
        var bias = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            for t in 0..<taps { w[c * taps + t] *= inner.scale[c] }
            w[c * taps + centre] += w1[c] + 1
            let shift = inner.shift[c] + b1[c]
            for t in 0..<taps { w[c * taps + t] *= outer.scale[c] }
            bias[c] = shift * outer.scale[c] + outer.shift[c]
        }
        b.folded.set("features.8.weight", shape: [k, k, channels], Depthwise.pack(torchWeight: w, channels: channels, kernelHeight: k, kernelWidth: k))
        b.folded.set("features.8.bias", shape: [channels], bias)
        return b.append(.depthwise(DepthwiseConvolution(
            kernelHeight: k, kernelWidth: k, stride: 1, padTop: k / 2, padLeft: k / 2, channelOffset: 0, channels: channels,
            weight: "features.8.weight", bias: "features.8.bias", activation: .identity, slope: nil)), [x], sources: [
                Source(name: "\(p).conv.c", kind: .convolution(macsPerOutput: taps), parameters: channels * taps),
                Source(name: "\(p).conv.bn", kind: .batchNorm, parameters: 2 * channels),
                Source(name: "\(p).conv1", kind: .convolution(macsPerOutput: 1), parameters: 2 * channels),
                Source(name: "\(p).bn", kind: .batchNorm, parameters: 2 * channels)])
    }
}
