/// Graph builder for the RetinaFace detector with the MobileNet-0.25 body (detection.md): body,
/// FPN, SSH context modules and the three heads. Any input size; block counts of the body's
/// second and third stages and every width come from the checkpoint.
///
/// Outputs, per image, anchors in the order of the heads (level 1, 2, 3; row-major cells, two
/// anchors per cell): `boxes` `[A, 4]` (offsets to decode against the priors), `scores` `[A, 2]`
/// (softmax; index 1 is "face") and `landmarks` `[A, 10]`.
enum RetinaFaceBuilder {
    /// LeakyReLU slope of every CBL block in the 0.25-width network.
    static let leak: Float = 0.1

    static func build(_ raw: RawWeights) throws -> (ModelGraph, FoldedParameters) {
        var b = GraphBuilder(raw: raw, architecture: .retinaFace)
        let leaky = ActivationFunction.leakyRelu(leak)
        var x = 0, channels = 3

        // CBL: conv (no bias) + BN + LeakyReLU; keys `p.0` and `p.1`.
        func cbl(_ input: Int, _ cin: Int, _ p: String, stride: Int = 1, activation: ActivationFunction = leaky, depthwise: Bool = false) throws -> (Int, Int) {
            try b.convolution(input, channels: cin, module: "\(p).0", batchNorm: "\(p).1", activation: activation, depthwise: depthwise,
                              stride: stride, name: p)
        }
        // DW block: depthwise 3x3 CBL (`.0`, `.1`) then pointwise CBL (`.3`, `.4`).
        func dw(_ input: Int, _ cin: Int, _ p: String, stride: Int) throws -> (Int, Int) {
            let (t, c) = try b.convolution(input, channels: cin, module: "\(p).0", batchNorm: "\(p).1", activation: leaky, depthwise: true,
                                           stride: stride, name: "\(p).dw")
            return try b.convolution(t, channels: c, module: "\(p).3", batchNorm: "\(p).4", activation: leaky, name: "\(p).pw")
        }

        b.stage = "body.stage1"
        (x, channels) = try cbl(x, channels, "body.stage1.0", stride: 2)
        for (i, stride) in [1, 2, 1, 2, 1].enumerated() {
            (x, channels) = try dw(x, channels, "body.stage1.\(i + 1)", stride: stride)
        }
        b.report("body.stage1")
        var levels = [(x, channels)]
        for stage in ["body.stage2", "body.stage3"] {
            b.stage = stage
            var i = 0
            while b.raw.contains("\(stage).\(i).0.weight") {
                (x, channels) = try dw(x, channels, "\(stage).\(i)", stride: i == 0 ? 2 : 1)
                i += 1
            }
            if i == 0 { _ = try b.raw.take("\(stage).0.0.weight", [channels, 1, 3, 3]) }  // reported as missing
            b.report(stage)
            levels.append((x, channels))
        }

        // FPN: lateral 1x1 CBLs, top-down nearest upsampling and 3x3 merges.
        b.stage = "fpn"
        var lateral: [(Int, Int)] = []
        for (i, level) in levels.enumerated() { lateral.append(try cbl(level.0, level.1, "fpn.output\(i + 1)")) }
        b.report("fpn.P3")
        let up3 = b.append(.resizeNearest, [lateral[2].0, lateral[1].0])
        b.append(.add, [lateral[1].0, up3], output: lateral[1].0)
        let p2 = try cbl(lateral[1].0, lateral[1].1, "fpn.merge2")
        b.report("fpn.P2")
        let up2 = b.append(.resizeNearest, [p2.0, lateral[0].0])
        b.append(.add, [lateral[0].0, up2], output: lateral[0].0)
        let p1 = try cbl(lateral[0].0, lateral[0].1, "fpn.merge1")
        b.report("fpn.P1")

        // SSH: 3x3 (CB), 5x5 as two 3x3s, 7x7 as three; the ReLU over the concatenation is fused
        // into each branch (ReLU is elementwise).
        var features: [(Int, Int)] = []
        for (i, p) in [p1, p2, lateral[2]].enumerated() {
            let m = "ssh\(i + 1)"
            b.stage = m
            let (a, ca) = try b.convolution(p.0, channels: p.1, module: "\(m).conv3X3.0", batchNorm: "\(m).conv3X3.1", activation: .relu,
                                            name: "\(m).conv3X3")
            let (t, ct) = try cbl(p.0, p.1, "\(m).conv5X5_1")
            let (c5, cc5) = try b.convolution(t, channels: ct, module: "\(m).conv5X5_2.0", batchNorm: "\(m).conv5X5_2.1", activation: .relu,
                                              name: "\(m).conv5X5_2")
            let (t7, c7) = try cbl(t, ct, "\(m).conv7X7_2")
            let (c7x, cc7) = try b.convolution(t7, channels: c7, module: "\(m).conv7x7_3.0", batchNorm: "\(m).conv7x7_3.1", activation: .relu,
                                               name: "\(m).conv7x7_3")
            features.append((b.append(.concatChannels, [a, c5, c7x]), ca + cc5 + cc7))
            b.report(m)
        }

        // Heads: 1x1 convs with bias per level, each level's cells laid end to end.
        b.stage = "heads"
        var heads: [String: [Int]] = [:]
        for head in ["BboxHead", "ClassHead", "LandmarkHead"] {
            for (i, f) in features.enumerated() {
                let (t, _) = try b.convolution(f.0, channels: f.1, module: "\(head).\(i).conv1x1", bias: true, batchNorm: nil, name: "\(head).\(i)")
                heads[head, default: []].append(t)
            }
        }
        let boxes = b.append(.concatPositions, heads["BboxHead"]!)
        let logits = b.append(.concatPositions, heads["ClassHead"]!)
        let scores = b.append(.softmax(group: 2), [logits])
        let landmarks = b.append(.concatPositions, heads["LandmarkHead"]!)
        b.outputs = [
            GraphOutput(name: "boxes", tensor: boxes, layout: .rows(4), optional: false),
            GraphOutput(name: "scores", tensor: scores, layout: .rows(2), optional: false),
            GraphOutput(name: "landmarks", tensor: landmarks, layout: .rows(10), optional: false),
        ]
        try b.raw.finish(.retinaFace)
        return (b.graph(inputChannels: 3, inputSize: nil), b.folded)
    }
}
