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
    /// Counts of this model's original and folded graphs at batch 1 and the model's own input
    /// size, read from its graph: each operation lists the PyTorch modules it was folded from.
    public func complexity() -> ComplexityReport {
        let plan = defaultPlan
        var layers: [ComplexityReport.Layer] = []
        var foldedMACs = 0
        for (i, op) in graph.operations.enumerated() {
            let out = plan.shapes[op.output]
            let inputs = op.inputs.map { plan.shapes[$0] }
            // Elements and NCHW shape of what each source module produces.
            var extents: [(elements: Int, shape: [Int])] = []
            switch op.kind {
            case .attentionGates:
                let map = inputs[1]
                guard case .attention(let a) = plan.steps[i].work else { continue }
                let mip = a.hidden
                let positions = map.height + map.width
                extents = [(mip * positions, [mip, positions, 1]), (mip * positions, [mip, positions, 1]),
                           (map.channels * map.height, [map.channels, map.height, 1]), (map.channels * map.width, [map.channels, 1, map.width])]
                foldedMACs += positions * map.channels * mip * 2
            case .coordinatePool:
                let x = inputs[0]
                extents = [(x.channels * x.height, [x.channels, x.height, 1]), (x.channels * x.width, [x.channels, 1, x.width])]
            case .depthwise(let d):
                extents = [(out.height * out.width * d.channels, [d.channels, out.height, out.width])]
                foldedMACs += out.height * out.width * d.channels * d.kernelHeight * d.kernelWidth
            case .convolution(let c):
                extents = [(out.count, [out.channels, out.height, out.width])]
                foldedMACs += out.count * c.kernel * c.kernel * inputs[0].channels
            case .channelConvolution:
                extents = [(out.count, [out.channels])]
                guard case .channelConvolution(let c) = plan.steps[i].work else { continue }
                foldedMACs += out.count * c.positions * c.kernel
            case .gate, .gateMap, .multiply:
                extents = [(out.count, [out.channels, out.height, out.width])]
                foldedMACs += out.count * (op.kind == .gate ? 2 : 1)
            default:
                extents = [(out.count, [out.channels, out.height, out.width])]
            }
            for (j, source) in op.sources.enumerated() {
                let extent = extents[min(j, extents.count - 1)]
                let operation: ComplexityReport.Layer.Operation
                switch source.kind {
                case .convolution(let perOutput): operation = .convolution(macs: perOutput * extent.elements)
                case .linear(let perOutput): operation = .linear(macs: perOutput * extent.elements)
                case .batchNorm: operation = .batchNorm(elements: extent.elements)
                case .prelu: operation = .prelu(elements: extent.elements)
                case .adaptivePool:
                    let x = inputs[0]
                    let window = Double(x.count) / Double(max(extent.elements, 1))
                    operation = .adaptivePool(inputElements: x.count, outputElements: extent.elements, window: window)
                case .unused: operation = .batchNorm(elements: 0)
                }
                layers.append(.init(name: source.name, operation: operation, outputShape: extent.shape, parameters: source.parameters))
            }
        }
        for source in graph.unused {
            layers.append(.init(name: source.name, operation: .batchNorm(elements: 0), outputShape: [], parameters: source.parameters))
        }
        return ComplexityReport(architecture: architecture, layers: layers, parameters: originalParameterCount,
                                foldedParameters: folded.valueCount, foldedMACs: foldedMACs)
    }
}
