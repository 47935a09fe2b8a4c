import FERKernels
import FERTensor

/// The executable form of a model: folded weights copied once into one arena, layers as plain
/// structs pointing into it, and the input size fixed at 3x112x112.
///
/// Activations are NHWC `(batch, height, width, channels)` throughout; a 1x1 convolution over
/// the whole batch is then one `sgemm` of `(batch*height*width, cin) x (cin, cout)`.
final class Network: @unchecked Sendable {
    static let inputSize = 112

    struct Dense {  // stem: 3x3 stride-2 dense conv, weight (kh*kw*cin, cout)
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, slope: UnsafePointer<Float>?
        let cin: Int, cout: Int, kernel: Int, stride: Int
    }
    struct DepthwiseLayer {  // weight (kh, kw, channels) tap-major
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, slope: UnsafePointer<Float>?
        let channels: Int, kernelHeight: Int, kernelWidth: Int
    }
    struct Pointwise {  // weight (cin, cout)
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, slope: UnsafePointer<Float>?
        let cin: Int, cout: Int
    }
    struct Attention {  // coordinate attention gate convolutions
        let conv1: Pointwise, conv2: Pointwise, conv3: Pointwise
    }
    struct MixBlock {
        let expand: Pointwise
        let groups: [DepthwiseLayer]  // consecutive channel ranges of the expanded tensor
        let stride: Int
        let attention: Attention
        let project: Pointwise
        let residual: Bool
        /// The backbone stage (2...7) this block belongs to.
        let stage: Int
    }
    enum Head {
        case spatialBias(reduce: Pointwise, conv: UnsafePointer<Float>, convBias: UnsafePointer<Float>, fc: Pointwise)
        case embedding(dw: DepthwiseLayer, linear: Pointwise)
        case ddam(heads: [(h: DepthwiseLayer, w: DepthwiseLayer, attention: Attention)], pool: DepthwiseLayer, fc: Pointwise)
    }

    let architecture: Architecture
    let stem: Dense
    let stage1: DepthwiseLayer
    let blocks: [MixBlock]
    let stage8: (depthwise: DepthwiseLayer?, pointwise: Pointwise?)
    let head: Head
    /// Channels of the backbone's 7x7 feature map (256 LFN, 512 MFN).
    let featureChannels: Int
    /// Length of the output vector: classes, or the embedding width.
    let outputWidth: Int
    /// The folded weights every layer points into.
    private let arena: ParameterArena
    /// Number of folded parameters.
    let parameterCount: Int

    /// Builds the layers over `folded`, which must be complete (no appends afterwards).
    init(_ folded: FoldedParameters) throws {
        architecture = folded.architecture
        arena = folded.arena
        parameterCount = folded.valueCount
        var offsets: [String: (UnsafePointer<Float>, [Int])] = [:]
        for name in folded.names {
            let (offset, shape) = folded.location(name)!
            offsets[name] = (UnsafePointer(arena.base + offset), shape)
        }
        var used: Set<String> = []
        func tensor(_ name: String, _ rank: Int? = nil) throws -> (UnsafePointer<Float>, [Int]) {
            guard let entry = offsets[name] else { throw EngineError.invalidFusedModel("missing tensor '\(name)'") }
            if let rank, entry.1.count != rank {
                throw EngineError.invalidFusedModel("tensor '\(name)' has shape \(entry.1), expected rank \(rank)")
            }
            used.insert(name)
            return entry
        }
        func vector(_ name: String, _ count: Int) throws -> UnsafePointer<Float> {
            let (p, shape) = try tensor(name, 1)
            guard shape[0] == count else { throw EngineError.invalidFusedModel("tensor '\(name)' has \(shape[0]) values, expected \(count)") }
            return p
        }
        func optionalVector(_ name: String, _ count: Int) throws -> UnsafePointer<Float>? {
            offsets[name] == nil ? nil : try vector(name, count)
        }
        func pointwise(_ name: String, cin: Int, slope: Bool = false, bias: Bool = true) throws -> Pointwise {
            let (w, shape) = try tensor("\(name).weight", 2)
            guard shape[0] == cin else { throw EngineError.invalidFusedModel("'\(name).weight' takes \(shape[0]) inputs, the layer before gives \(cin)") }
            return Pointwise(weight: w, bias: bias ? try vector("\(name).bias", shape[1]) : nil,
                             slope: slope ? try vector("\(name).slope", shape[1]) : nil, cin: cin, cout: shape[1])
        }
        func depthwise(_ name: String, channels: Int, bias: Bool = true) throws -> DepthwiseLayer {
            let (w, shape) = try tensor("\(name).weight", 3)
            guard shape[2] == channels else { throw EngineError.invalidFusedModel("'\(name).weight' has \(shape[2]) channels, expected \(channels)") }
            return DepthwiseLayer(weight: w, bias: bias ? try vector("\(name).bias", channels) : nil,
                                  slope: try optionalVector("\(name).slope", channels),
                                  channels: channels, kernelHeight: shape[0], kernelWidth: shape[1])
        }
        func attention(_ name: String, channels: Int) throws -> Attention {
            let conv1 = try pointwise("\(name).conv1", cin: channels)
            return Attention(conv1: conv1, conv2: try pointwise("\(name).conv2", cin: conv1.cout),
                             conv3: try pointwise("\(name).conv3", cin: conv1.cout))
        }

        let (stemWeight, stemShape) = try tensor("features.0.weight", 4)
        guard stemShape[0] == 3, stemShape[1] == 3, stemShape[2] == 3 else {
            throw EngineError.invalidFusedModel("'features.0.weight' has shape \(stemShape), expected [3, 3, 3, C]")
        }
        let c0 = stemShape[3]
        stem = Dense(weight: stemWeight, bias: try vector("features.0.bias", c0),
                     slope: try optionalVector("features.0.slope", c0), cin: 3, cout: c0, kernel: 3, stride: 2)
        stage1 = try depthwise("features.1", channels: c0)
        var channels = c0
        var blocks: [MixBlock] = []
        func mixBlock(_ name: String, stride: Int, residual: Bool) throws -> MixBlock {
            let expand = try pointwise("\(name).expand", cin: channels, slope: true)
            var groups: [DepthwiseLayer] = []
            var covered = 0
            while offsets["\(name).dw.\(groups.count).weight"] != nil {
                let shape = offsets["\(name).dw.\(groups.count).weight"]!.1
                guard shape.count == 3 else { throw EngineError.invalidFusedModel("'\(name).dw.\(groups.count).weight' is not [kh, kw, C]") }
                groups.append(try depthwise("\(name).dw.\(groups.count)", channels: shape[2], bias: false))
                covered += shape[2]
            }
            guard covered == expand.cout else {
                throw EngineError.invalidFusedModel("'\(name)' depthwise groups cover \(covered) of \(expand.cout) channels")
            }
            let project = try pointwise("\(name).project", cin: expand.cout)
            if residual && project.cout != channels {
                throw EngineError.invalidFusedModel("residual block '\(name)' changes channels \(channels) -> \(project.cout)")
            }
            channels = project.cout
            return MixBlock(expand: expand, groups: groups, stride: stride,
                            attention: try attention("\(name).ca", channels: expand.cout),
                            project: project, residual: residual, stage: Int(name.split(separator: ".")[1])!)
        }
        for stage in 2...7 {
            if stage % 2 == 0 {
                blocks.append(try mixBlock("features.\(stage)", stride: 2, residual: false))
            } else {
                var j = 0
                while offsets["features.\(stage).\(j).expand.weight"] != nil {
                    blocks.append(try mixBlock("features.\(stage).\(j)", stride: 1, residual: true))
                    j += 1
                }
            }
        }
        self.blocks = blocks
        if offsets["features.8.weight"]?.1.count == 2 {
            let p = try pointwise("features.8", cin: channels, slope: true)
            stage8 = (nil, p)
            channels = p.cout
        } else {
            stage8 = (try depthwise("features.8", channels: channels), nil)
        }
        featureChannels = channels

        switch architecture {
        case .lfnsb(let classes):
            let reduce = try pointwise("sb.reduce", cin: channels)
            let (conv, convShape) = try tensor("sb.conv.weight", 3)
            guard convShape == [4, 4, 3] else { throw EngineError.invalidFusedModel("'sb.conv.weight' has shape \(convShape), expected [4, 4, 3]") }
            let fc = try pointwise("fc", cin: 4 * (reduce.cout - 2))
            guard fc.cout == classes else { throw EngineError.invalidFusedModel("fc has \(fc.cout) outputs for \(classes) classes") }
            head = .spatialBias(reduce: reduce, conv: conv, convBias: try vector("sb.conv.bias", 4), fc: fc)
            outputWidth = classes
        case .lfn, .mfn:
            let dw = try depthwise("embed.dw", channels: channels)
            let linear = try pointwise("embed.linear", cin: channels)
            head = .embedding(dw: dw, linear: linear)
            outputWidth = linear.cout
        case .ddamnet(let classes, let count):
            var heads: [(DepthwiseLayer, DepthwiseLayer, Attention)] = []
            for i in 0..<count {
                heads.append((try depthwise("heads.\(i).h", channels: channels), try depthwise("heads.\(i).w", channels: channels),
                              try attention("heads.\(i)", channels: channels)))
            }
            let fc = try pointwise("fc", cin: channels)
            guard fc.cout == classes else { throw EngineError.invalidFusedModel("fc has \(fc.cout) outputs for \(classes) classes") }
            head = .ddam(heads: heads, pool: try depthwise("pool", channels: channels), fc: fc)
            outputWidth = classes
        }
        let unused = folded.names.filter { !used.contains($0) }
        if !unused.isEmpty { throw EngineError.invalidFusedModel("tensors the architecture does not use: \(unused.prefix(10).joined(separator: ", "))") }
    }

}
