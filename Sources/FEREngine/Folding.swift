import FERKernels
import FERTensor

/// Turns a PyTorch state_dict into ``FoldedParameters``: every BatchNorm folded into the
/// convolution or linear layer before it, RepVGGDW merged into one depthwise 3x3 with bias, and
/// weights packed into the kernels' layouts:
///
/// | folded tensor | shape | layout |
/// |---|---|---|
/// | dense conv `*.weight` (stem) | `[kh, kw, cin, cout]` | im2col rows × output channels |
/// | depthwise `*.weight` | `[kh, kw, channels]` | tap-major |
/// | 1x1 conv / linear `*.weight` | `[cin, cout]` | transposed PyTorch weight |
/// | `*.bias`, `*.slope` (PReLU) | `[channels]` | |
///
/// Parameters the published forward passes never use are skipped on purpose: LFNSB's and
/// DDAMNet's `bn` (BatchNorm1d), MFN's `conv_dw.bn` / `conv_dw.prelu`, and each DDAM head's `Linear`.
public enum Folding {
    /// Folds `raw`, whose keys must be exactly those of `architecture`.
    static func fold(_ architecture: Architecture, _ raw: inout RawWeights) throws -> FoldedParameters {
        var out = FoldedParameters(architecture: architecture, capacity: raw.valueCount)
        let mfn = architecture.usesMFNBackbone
        var channels = 3

        // Stage 0: 3x3 stride-2 dense conv + BN (+ PReLU in MFN).
        do {
            let p = architecture.stagePrefix(0)
            let name = mfn ? "\(p).conv.weight" : "\(p).c.weight"
            let cout = raw.shape(name)?.first ?? 64
            var w = try raw.take(name, [cout, channels, 3, 3])
            let bn = try raw.batchNorm("\(p).bn", channels: cout)
            scaleRows(&w, by: bn.scale)
            out.set("features.0.weight", shape: [3, 3, channels, cout],
                    Im2col.packWeight(torchWeight: w, cout: cout, cin: channels, kernel: 3))
            out.set("features.0.bias", shape: [cout], bn.shift)
            if mfn { out.set("features.0.slope", shape: [cout], try raw.take("\(p).prelu.weight", [cout])) }
            channels = cout
        }
        // Stage 1: 3x3 depthwise + BN (+ PReLU in MFN).
        do {
            let p = architecture.stagePrefix(1)
            let name = mfn ? "\(p).conv.weight" : "\(p).c.weight"
            var w = try raw.take(name, [channels, 1, 3, 3])
            let bn = try raw.batchNorm("\(p).bn", channels: channels)
            scaleRows(&w, by: bn.scale)
            out.set("features.1.weight", shape: [3, 3, channels],
                    Depthwise.pack(torchWeight: w, channels: channels, kernelHeight: 3, kernelWidth: 3))
            out.set("features.1.bias", shape: [channels], bn.shift)
            if mfn { out.set("features.1.slope", shape: [channels], try raw.take("\(p).prelu.weight", [channels])) }
        }
        // Stages 2-7: MixBlocks; stages 3, 5, 7 repeat a residual block `model.J`.
        for stage in 2...7 {
            let p = architecture.stagePrefix(stage)
            if stage % 2 == 0 {
                channels = try foldMixBlock(&raw, "\(p)", into: &out, as: "features.\(stage)", cin: channels, mfn: mfn)
            } else {
                var j = 0
                while raw.contains("\(p).model.\(j).conv.conv.weight") {
                    channels = try foldMixBlock(&raw, "\(p).model.\(j)", into: &out, as: "features.\(stage).\(j)", cin: channels, mfn: mfn)
                    j += 1
                }
                if j == 0 { _ = try raw.take("\(p).model.0.conv.conv.weight", [1]) }  // reported as missing
            }
        }
        // Stage 8.
        do {
            let p = architecture.stagePrefix(8)
            if mfn {
                let cout = raw.shape("\(p).conv.weight")?.first ?? 512
                let (w, b) = try pointwise(&raw, weight: "\(p).conv.weight", cin: channels, cout: cout, bn: "\(p).bn")
                out.set("features.8.weight", shape: [channels, cout], w)
                out.set("features.8.bias", shape: [cout], b)
                out.set("features.8.slope", shape: [cout], try raw.take("\(p).prelu.weight", [cout]))
                channels = cout
            } else {
                // RepVGGDW: BN_outer(BN_inner(dw3x3(x)) + dw1x1(x) + x), one 3x3 depthwise with bias.
                var w = try raw.take("\(p).conv.c.weight", [channels, 1, 3, 3])
                let inner = try raw.batchNorm("\(p).conv.bn", channels: channels)
                let w1 = try raw.take("\(p).conv1.weight", [channels, 1, 1, 1])
                let b1 = try raw.take("\(p).conv1.bias", [channels])
                let outer = try raw.batchNorm("\(p).bn", channels: channels)
                var bias = [Float](repeating: 0, count: channels)
                for c in 0..<channels {
                    for t in 0..<9 { w[c * 9 + t] *= inner.scale[c] }
                    w[c * 9 + 4] += w1[c] + 1
                    let b = inner.shift[c] + b1[c]
                    for t in 0..<9 { w[c * 9 + t] *= outer.scale[c] }
                    bias[c] = b * outer.scale[c] + outer.shift[c]
                }
                out.set("features.8.weight", shape: [3, 3, channels],
                        Depthwise.pack(torchWeight: w, channels: channels, kernelHeight: 3, kernelWidth: 3))
                out.set("features.8.bias", shape: [channels], bias)
            }
        }

        switch architecture {
        case .lfnsb(let classes):
            let reduced = raw.shape("sb.feature_reduction.0.weight")?.first ?? 66
            let (w, b) = try pointwise(&raw, weight: "sb.feature_reduction.0.weight", cin: channels, cout: reduced, bn: "sb.feature_reduction.1")
            out.set("sb.reduce.weight", shape: [channels, reduced], w)
            out.set("sb.reduce.bias", shape: [reduced], b)
            out.set("sb.conv.weight", shape: [4, 4, 3], try raw.take("sb.sb_conv.weight", [4, 4, 3]))
            out.set("sb.conv.bias", shape: [4], try raw.take("sb.sb_conv.bias", [4]))
            let features = 4 * (reduced - 2)
            try foldLinear(&raw, "fc", cin: features, cout: classes, into: &out)
            raw.ignore(prefix: "bn.")
        case .lfn, .mfn:
            try foldDepthwiseBN(&raw, weight: "conv_6_dw.conv.weight", bn: "conv_6_dw.bn", channels: channels,
                                kernel: (7, 7), into: &out, as: "embed.dw")
            let width = raw.shape("linear.weight")?.first ?? channels
            var w = try raw.take("linear.weight", [width, channels])
            let bn = try raw.batchNorm("bn", channels: width)
            scaleRows(&w, by: bn.scale)
            out.set("embed.linear.weight", shape: [channels, width], transpose(w, rows: width, cols: channels))
            out.set("embed.linear.bias", shape: [width], bn.shift)
        case .ddamnet(let classes, let heads):
            for i in 0..<heads {
                let h = "cat_head\(i).CoordAtt"
                try foldDepthwiseBN(&raw, weight: "\(h).Linear_h.conv.weight", bn: "\(h).Linear_h.bn", channels: channels,
                                    kernel: (1, 7), into: &out, as: "heads.\(i).h")
                try foldDepthwiseBN(&raw, weight: "\(h).Linear_w.conv.weight", bn: "\(h).Linear_w.bn", channels: channels,
                                    kernel: (7, 1), into: &out, as: "heads.\(i).w")
                try foldAttentionConvs(&raw, h, channels: channels, into: &out, as: "heads.\(i)")
                raw.ignore(prefix: "\(h).Linear.")
            }
            try foldDepthwiseBN(&raw, weight: "Linear.conv.weight", bn: "Linear.bn", channels: channels,
                                kernel: (7, 7), into: &out, as: "pool")
            try foldLinear(&raw, "fc", cin: channels, cout: classes, into: &out)
            raw.ignore(prefix: "bn.")
        }
        try raw.finish(architecture)
        return out
    }

    /// One MixBlock: expand (1x1 + BN + PReLU), mixed depthwise, coordinate attention, project (1x1 + BN).
    /// Returns its output channel count.
    private static func foldMixBlock(
        _ raw: inout RawWeights, _ p: String, into out: inout FoldedParameters, as name: String, cin: Int, mfn: Bool
    ) throws -> Int {
        let width = raw.shape("\(p).conv.conv.weight")?.first ?? cin
        let (we, be) = try pointwise(&raw, weight: "\(p).conv.conv.weight", cin: cin, cout: width, bn: "\(p).conv.bn")
        out.set("\(name).expand.weight", shape: [cin, width], we)
        out.set("\(name).expand.bias", shape: [width], be)
        out.set("\(name).expand.slope", shape: [width], try raw.take("\(p).conv.prelu.weight", [width]))

        var group = 0
        var covered = 0
        while let shape = raw.shape("\(p).conv_dw.mixed_depthwise_conv.\(group).weight"), shape.count == 4 {
            let (split, k) = (shape[0], shape[2])
            let w = try raw.take("\(p).conv_dw.mixed_depthwise_conv.\(group).weight", [split, 1, k, k])
            out.set("\(name).dw.\(group).weight", shape: [k, k, split],
                    Depthwise.pack(torchWeight: w, channels: split, kernelHeight: k, kernelWidth: k))
            covered += split
            group += 1
        }
        if covered != width {
            // Reported through the strict loader as a shape problem on the first group.
            _ = try raw.take("\(p).conv_dw.mixed_depthwise_conv.\(group)", [width - covered, 1, 3, 3])
        }
        if mfn {
            raw.ignore(prefix: "\(p).conv_dw.bn.")
            raw.ignore("\(p).conv_dw.prelu.weight")
        }
        try foldAttentionConvs(&raw, "\(p).CA", channels: width, into: &out, as: "\(name).ca")
        let cout = raw.shape("\(p).project.conv.weight")?.first ?? cin
        let (wp, bp) = try pointwise(&raw, weight: "\(p).project.conv.weight", cin: width, cout: cout, bn: "\(p).project.bn")
        out.set("\(name).project.weight", shape: [width, cout], wp)
        out.set("\(name).project.bias", shape: [cout], bp)
        return cout
    }

    /// Coordinate attention's `conv1` (+ `bn1` folded), `conv2` and `conv3`.
    private static func foldAttentionConvs(
        _ raw: inout RawWeights, _ p: String, channels: Int, into out: inout FoldedParameters, as name: String
    ) throws {
        let mip = raw.shape("\(p).conv1.weight")?.first ?? max(8, channels / 32)
        var w1 = try raw.take("\(p).conv1.weight", [mip, channels, 1, 1])
        let b1 = try raw.take("\(p).conv1.bias", [mip])
        let bn = try raw.batchNorm("\(p).bn1", channels: mip)
        scaleRows(&w1, by: bn.scale)
        out.set("\(name).conv1.weight", shape: [channels, mip], transpose(w1, rows: mip, cols: channels))
        out.set("\(name).conv1.bias", shape: [mip], (0..<mip).map { b1[$0] * bn.scale[$0] + bn.shift[$0] })
        for conv in ["conv2", "conv3"] {
            let w = try raw.take("\(p).\(conv).weight", [channels, mip, 1, 1])
            out.set("\(name).\(conv).weight", shape: [mip, channels], transpose(w, rows: channels, cols: mip))
            out.set("\(name).\(conv).bias", shape: [channels], try raw.take("\(p).\(conv).bias", [channels]))
        }
    }

    /// A bias-free 1x1 conv followed by BN, as `[cin, cout]` weight and `[cout]` bias.
    private static func pointwise(
        _ raw: inout RawWeights, weight: String, cin: Int, cout: Int, bn: String
    ) throws -> ([Float], [Float]) {
        var w = try raw.take(weight, [cout, cin, 1, 1])
        let norm = try raw.batchNorm(bn, channels: cout)
        scaleRows(&w, by: norm.scale)
        return (transpose(w, rows: cout, cols: cin), norm.shift)
    }

    /// A bias-free depthwise conv followed by BN, packed tap-major.
    private static func foldDepthwiseBN(
        _ raw: inout RawWeights, weight: String, bn: String, channels: Int, kernel: (Int, Int),
        into out: inout FoldedParameters, as name: String
    ) throws {
        var w = try raw.take(weight, [channels, 1, kernel.0, kernel.1])
        let norm = try raw.batchNorm(bn, channels: channels)
        scaleRows(&w, by: norm.scale)
        out.set("\(name).weight", shape: [kernel.0, kernel.1, channels],
                Depthwise.pack(torchWeight: w, channels: channels, kernelHeight: kernel.0, kernelWidth: kernel.1))
        out.set("\(name).bias", shape: [channels], norm.shift)
    }

    /// `nn.Linear(cin, cout)` with bias, as `[cin, cout]` weight.
    private static func foldLinear(
        _ raw: inout RawWeights, _ p: String, cin: Int, cout: Int, into out: inout FoldedParameters
    ) throws {
        let w = try raw.take("\(p).weight", [cout, cin])
        out.set("\(p).weight", shape: [cin, cout], transpose(w, rows: cout, cols: cin))
        out.set("\(p).bias", shape: [cout], try raw.take("\(p).bias", [cout]))
    }

    /// Multiplies each row (output channel) of a `[rows, ...]` weight by `scale[row]`.
    private static func scaleRows(_ w: inout [Float], by scale: [Float]) {
        let per = w.count / max(scale.count, 1)
        for r in 0..<scale.count {
            for i in 0..<per { w[r * per + i] *= scale[r] }
        }
    }

    private static func transpose(_ w: [Float], rows: Int, cols: Int) -> [Float] {
        var t = [Float](repeating: 0, count: w.count)
        for r in 0..<rows {
            for c in 0..<cols { t[c * rows + r] = w[r * cols + c] }
        }
        return t
    }
}
