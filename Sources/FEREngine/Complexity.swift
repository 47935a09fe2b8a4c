/// Parameter and multiply-accumulate counts, for the original PyTorch graph (under fvcore's and
/// thop's conventions) and for the folded graph this runtime executes.
///
/// Conventions, as those tools count a forward pass at batch 1 (checked against both in
/// `Tests/Fixtures/complexity.json`, made by `tools/reference/count_complexity.py`):
///
/// | operation | fvcore | thop |
/// |---|---|---|
/// | convolution (any), linear | multiply-accumulates, bias not counted | same |
/// | BatchNorm (affine, inference) | 2 per output element | 4 per output element |
/// | PReLU | 0 | 1 per element |
/// | AdaptiveAvgPool2d | 1 per input element | (window + 1) per output element |
/// | ReLU, h_swish, sigmoid, products, sums | 0 | 0 |
///
/// Parameters count as PyTorch's `sum(p.numel() for p in model.parameters())`: every weight and
/// bias in the checkpoint, including those the forward pass never uses, and no BatchNorm running
/// statistics.
public struct ComplexityReport: Sendable {
    /// One operation of the original graph.
    public struct Layer: Sendable {
        public enum Operation: Sendable {
            case convolution(macs: Int)
            case linear(macs: Int)
            case batchNorm(elements: Int)
            case prelu(elements: Int)
            case adaptivePool(inputElements: Int, outputElements: Int, window: Double)
        }
        /// PyTorch module path (`features.3.model.0.conv.conv`).
        public let name: String
        public let operation: Operation
        /// Output shape at batch 1, without the batch axis.
        public let outputShape: [Int]
        /// Learnable parameters of this module.
        public let parameters: Int

        public var fvcore: Int {
            switch operation {
            case .convolution(let m), .linear(let m): return m
            case .batchNorm(let e): return 2 * e
            case .prelu: return 0
            case .adaptivePool(let input, _, _): return input
            }
        }

        public var thop: Int {
            switch operation {
            case .convolution(let m), .linear(let m): return m
            case .batchNorm(let e): return 4 * e
            case .prelu(let e): return e
            case .adaptivePool(_, let output, let window): return Int((Double(output) * (window + 1)).rounded())
            }
        }

        /// Multiply-accumulates of convolutions and linear layers only.
        public var macs: Int {
            switch operation {
            case .convolution(let m), .linear(let m): return m
            default: return 0
            }
        }
    }

    public let architecture: Architecture
    /// The original graph's operations in forward order.
    public let layers: [Layer]
    /// Parameters of the PyTorch model (from the checkpoint; for a fused file, from its metadata).
    public let parameters: Int?
    /// Values in the folded weights this runtime holds.
    public let foldedParameters: Int
    /// Multiply-accumulates of the folded graph (GEMMs, convolutions, gating products), batch 1.
    public let foldedMACs: Int

    public var fvcoreTotal: Int { layers.reduce(0) { $0 + $1.fvcore } }
    public var thopTotal: Int { layers.reduce(0) { $0 + $1.thop } }
    public var macsTotal: Int { layers.reduce(0) { $0 + $1.macs } }
}

extension FERModel {
    /// Counts of this model's original and folded graphs at batch 1.
    public func complexity() -> ComplexityReport {
        var layers: [ComplexityReport.Layer] = []
        var folded = 0
        let mfn = architecture.usesMFNBackbone
        func conv(_ name: String, cin: Int, cout: Int, groups: Int = 1, kh: Int, kw: Int, out: (Int, Int), bias: Bool = false) {
            let macs = cout * out.0 * out.1 * (cin / groups) * kh * kw
            layers.append(.init(name: name, operation: .convolution(macs: macs), outputShape: [cout, out.0, out.1],
                                parameters: cout * (cin / groups) * kh * kw + (bias ? cout : 0)))
        }
        func bn(_ name: String, _ shape: [Int]) {
            layers.append(.init(name: name, operation: .batchNorm(elements: shape.reduce(1, *)), outputShape: shape, parameters: 2 * shape[0]))
        }
        func prelu(_ name: String, _ shape: [Int]) {
            layers.append(.init(name: name, operation: .prelu(elements: shape.reduce(1, *)), outputShape: shape, parameters: shape[0]))
        }
        func pool(_ name: String, channels: Int, input: (Int, Int), output: (Int, Int)) {
            let window = (Double(input.0) / Double(output.0)) * (Double(input.1) / Double(output.1))
            layers.append(.init(name: name, operation: .adaptivePool(
                inputElements: channels * input.0 * input.1, outputElements: channels * output.0 * output.1, window: window),
                outputShape: [channels, output.0, output.1], parameters: 0))
        }
        func attention(_ p: String, _ att: Network.Attention, h: Int, w: Int, pools: Bool) {
            let g = att.conv1.cin, mip = att.conv1.cout
            if pools {
                pool("\(p).pool_h", channels: g, input: (h, w), output: (h, 1))
                pool("\(p).pool_w", channels: g, input: (h, w), output: (1, w))
            }
            conv("\(p).conv1", cin: g, cout: mip, kh: 1, kw: 1, out: (h + w, 1), bias: true)
            bn("\(p).bn1", [mip, h + w, 1])
            conv("\(p).conv2", cin: mip, cout: g, kh: 1, kw: 1, out: (h, 1), bias: true)
            conv("\(p).conv3", cin: mip, cout: g, kh: 1, kw: 1, out: (w, 1), bias: true)
            folded += (h + w) * g * mip * 2
        }

        var (h, w) = (Network.inputSize / 2, Network.inputSize / 2)
        let s0 = network.stem, p0 = architecture.stagePrefix(0)
        conv(mfn ? "\(p0).conv" : "\(p0).c", cin: 3, cout: s0.cout, kh: 3, kw: 3, out: (h, w))
        bn("\(p0).bn", [s0.cout, h, w])
        if mfn { prelu("\(p0).prelu", [s0.cout, h, w]) }
        folded += h * w * s0.cout * 27
        let p1 = architecture.stagePrefix(1), c1 = network.stage1.channels
        conv(mfn ? "\(p1).conv" : "\(p1).c", cin: c1, cout: c1, groups: c1, kh: 3, kw: 3, out: (h, w))
        bn("\(p1).bn", [c1, h, w])
        if mfn { prelu("\(p1).prelu", [c1, h, w]) }
        folded += h * w * c1 * 9

        var repeatIndex: [Int: Int] = [:]
        for block in network.blocks {
            var p = architecture.stagePrefix(block.stage)
            if block.residual {
                let j = repeatIndex[block.stage, default: 0]
                repeatIndex[block.stage] = j + 1
                p += ".model.\(j)"
            }
            let e = block.expand, g = e.cout
            conv("\(p).conv.conv", cin: e.cin, cout: g, kh: 1, kw: 1, out: (h, w))
            bn("\(p).conv.bn", [g, h, w])
            prelu("\(p).conv.prelu", [g, h, w])
            folded += h * w * e.cin * g
            let (oh, ow) = ((h - 1) / block.stride + 1, (w - 1) / block.stride + 1)
            for (i, group) in block.groups.enumerated() {
                let k = group.kernelHeight
                conv("\(p).conv_dw.mixed_depthwise_conv.\(i)", cin: group.channels, cout: group.channels, groups: group.channels,
                     kh: k, kw: k, out: (oh, ow))
                folded += oh * ow * group.channels * k * k
            }
            if mfn {  // in the checkpoint, never run
                layers.append(.init(name: "\(p).conv_dw.bn (unused)", operation: .batchNorm(elements: 0), outputShape: [], parameters: 2 * g))
                layers.append(.init(name: "\(p).conv_dw.prelu (unused)", operation: .prelu(elements: 0), outputShape: [], parameters: g))
            }
            attention("\(p).CA", block.attention, h: oh, w: ow, pools: true)
            folded += oh * ow * g * 2
            let pr = block.project
            conv("\(p).project.conv", cin: g, cout: pr.cout, kh: 1, kw: 1, out: (oh, ow))
            bn("\(p).project.bn", [pr.cout, oh, ow])
            folded += oh * ow * g * pr.cout
            (h, w) = (oh, ow)
        }
        let p8 = architecture.stagePrefix(8)
        var c = network.featureChannels
        if let pw = network.stage8.pointwise {
            conv("\(p8).conv", cin: pw.cin, cout: pw.cout, kh: 1, kw: 1, out: (h, w))
            bn("\(p8).bn", [pw.cout, h, w])
            prelu("\(p8).prelu", [pw.cout, h, w])
            folded += h * w * pw.cin * pw.cout
        } else {
            conv("\(p8).conv.c", cin: c, cout: c, groups: c, kh: 3, kw: 3, out: (h, w))
            bn("\(p8).conv.bn", [c, h, w])
            conv("\(p8).conv1", cin: c, cout: c, groups: c, kh: 1, kw: 1, out: (h, w), bias: true)
            bn("\(p8).bn", [c, h, w])
            folded += h * w * c * 9
        }

        switch network.head {
        case .spatialBias(let reduce, _, _, let fc):
            let r = reduce.cout, length = r - 2
            conv("sb.feature_reduction.0", cin: c, cout: r, kh: 1, kw: 1, out: (h, w))
            bn("sb.feature_reduction.1", [r, h, w])
            pool("sb.pool", channels: r, input: (h, w), output: (2, 2))
            layers.append(.init(name: "sb.sb_conv", operation: .convolution(macs: 4 * length * 4 * 3), outputShape: [4, length], parameters: 4 * 4 * 3 + 4))
            layers.append(.init(name: "fc", operation: .linear(macs: fc.cin * fc.cout), outputShape: [fc.cout], parameters: fc.cin * fc.cout + fc.cout))
            layers.append(.init(name: "bn (unused)", operation: .batchNorm(elements: 0), outputShape: [], parameters: 2 * fc.cout))
            folded += h * w * c * r + 4 * length * 12 + fc.cin * fc.cout
        case .embedding(_, let linear):
            conv("conv_6_dw.conv", cin: c, cout: c, groups: c, kh: h, kw: w, out: (1, 1))
            bn("conv_6_dw.bn", [c, 1, 1])
            layers.append(.init(name: "linear", operation: .linear(macs: linear.cin * linear.cout), outputShape: [linear.cout], parameters: linear.cin * linear.cout))
            bn("bn", [linear.cout])
            folded += c * h * w + linear.cin * linear.cout
        case .ddam(let heads, _, let fc):
            for (i, head) in heads.enumerated() {
                let p = "cat_head\(i).CoordAtt"
                conv("\(p).Linear_h.conv", cin: c, cout: c, groups: c, kh: 1, kw: w, out: (h, 1))
                bn("\(p).Linear_h.bn", [c, h, 1])
                conv("\(p).Linear_w.conv", cin: c, cout: c, groups: c, kh: h, kw: 1, out: (1, w))
                bn("\(p).Linear_w.bn", [c, 1, w])
                attention(p, head.attention, h: h, w: w, pools: false)
                layers.append(.init(name: "\(p).Linear (unused)", operation: .batchNorm(elements: 0), outputShape: [],
                                    parameters: c * h * w + 2 * c))
                folded += 2 * c * h * w + h * w * c
            }
            conv("Linear.conv", cin: c, cout: c, groups: c, kh: h, kw: w, out: (1, 1))
            bn("Linear.bn", [c, 1, 1])
            layers.append(.init(name: "fc", operation: .linear(macs: fc.cin * fc.cout), outputShape: [fc.cout], parameters: fc.cin * fc.cout + fc.cout))
            layers.append(.init(name: "bn (unused)", operation: .batchNorm(elements: 0), outputShape: [], parameters: 2 * fc.cout))
            folded += c * h * w * 2 + fc.cin * fc.cout
            c = fc.cout
        }
        return ComplexityReport(architecture: architecture, layers: layers, parameters: originalParameterCount,
                                foldedParameters: network.parameterCount, foldedMACs: folded)
    }
}
