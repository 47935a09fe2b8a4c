/// The one description of a network the engine has: an ordered list of typed operations over
/// numbered tensors, with weights named in ``FoldedParameters``.
///
/// A builder (``LFNFamily``, ``RetinaFaceBuilder``) writes the graph once per model from the
/// checkpoint's keys and shapes; everything else reads it: ``ExecutionPlan`` infers every shape
/// for an input size and plans the memory, the forward pass runs its steps, ``ComplexityReport``
/// counts its sources, the stage observer and profile use its labels, and fused model files store
/// it as JSON.
///
/// Tensors are NHWC activations of one image (the batch axis is the session's). Tensor 0 is the
/// input. An operation writes one tensor; several operations may write the same tensor (a mixed
/// depthwise layer writes one channel range each; a residual projection accumulates into its
/// block's input; a gate multiplies in place).
public struct ModelGraph: Codable, Sendable, Equatable {
    /// Channels of the input tensor (3: RGB for the classifiers, BGR for the detector).
    public var inputChannels: Int
    /// Tensors, the input included.
    public var tensorCount: Int
    public var operations: [Operation]
    /// What a pass produces.
    public var outputs: [GraphOutput]
    /// Modules the checkpoint holds but the forward pass never runs (counted as parameters only).
    public var unused: [Source]
    /// The input size the model was trained at (112x112 for the classifiers); nil when any size works.
    public var inputHeight: Int?
    public var inputWidth: Int?

    public func output(_ name: String) -> GraphOutput? { outputs.first { $0.name == name } }
}

/// A named result of a pass.
public struct GraphOutput: Codable, Sendable, Equatable {
    public enum Layout: Codable, Sendable, Equatable {
        /// `[N, C]` from a 1x1xC tensor.
        case vector
        /// `[N, C, H, W]`, as PyTorch returns feature maps.
        case map
        /// `[N, H*W*C / k, k]`: rows of `k` values in NHWC order (detector heads).
        case rows(Int)
    }
    public var name: String
    public var tensor: Int
    public var layout: Layout
    /// Copied out only when a caller asks for it (feature maps), so ordinary passes skip the copy.
    public var optional: Bool
}

/// An activation function fused into the operation that precedes it.
public enum ActivationFunction: Codable, Sendable, Equatable {
    case identity, relu, hardSwish, sigmoid
    case leakyRelu(Float)
    /// Parametric ReLU with one slope per channel, the operation's `slope` weight.
    case prelu
}

/// One step of a network.
public struct Operation: Codable, Sendable, Equatable {
    public enum Kind: Codable, Sendable, Equatable {
        /// Dense `k x k` convolution (im2col + GEMM; a 1x1 stride-1 convolution or a linear layer is
        /// one GEMM). Weight `[k, k, cin, cout]`, bias `[cout]`.
        case convolution(Convolution)
        /// Depthwise convolution over channels `channelOffset ..< channelOffset + channels` of its
        /// input, written to the same range of its output. Weight `[kh, kw, channels]` tap-major.
        case depthwise(DepthwiseConvolution)
        /// Elementwise sum, maximum or product of two tensors of one shape.
        case add, maximum, multiply
        /// Concatenation along channels (same height and width).
        case concatChannels
        /// Each image's tensors laid end to end as positions: `(sum of h*w, 1, c)` (same channels).
        case concatPositions
        /// `F.interpolate(mode="nearest")` of input 0 to the height and width of input 1.
        case resizeNearest
        /// Coordinate attention's row means then column means: `(h + w, 1, c)`.
        case coordinatePool
        /// Coordinate attention's gates from its pooled rows and columns (input 0) for the map
        /// (input 1): conv1 + h_swish, then conv2 + sigmoid on rows and conv3 + sigmoid on columns.
        case attentionGates(AttentionGates)
        /// `x[y][x'][c] * rowGate[y][c] * columnGate[x'][c]`, inputs `[x, gates]`.
        case gate
        /// The gates alone as a map the size of input 1: `rowGate[y][c] * columnGate[x'][c]`.
        case gateMap
        /// PyTorch's `AdaptiveAvgPool2d((height, width))`.
        case adaptiveAveragePool(height: Int, width: Int)
        /// Spatial Bias: a Conv1d across channels with the pooled positions as its input
        /// channels, flattened as `v[outputs * t + o]`.
        case channelConvolution(ChannelConvolution)
        /// Softmax over each run of `group` consecutive channels.
        case softmax(group: Int)
        /// Division of each position's channel vector by its 2-norm.
        case l2Normalize
    }

    public var kind: Kind
    public var inputs: [Int]
    public var output: Int
    /// The PyTorch module this operation belongs to, for the profile (`features.3`, `fpn`).
    public var stage: String
    /// PyTorch module names whose output equals this operation's output (for stage comparison).
    public var reports: [String]
    /// The PyTorch modules this operation was folded from (for parameter and MAC counts).
    public var sources: [Source]

    public init(_ kind: Kind, inputs: [Int], output: Int, stage: String, reports: [String] = [], sources: [Source] = []) {
        self.kind = kind
        self.inputs = inputs
        self.output = output
        self.stage = stage
        self.reports = reports
        self.sources = sources
    }
}

public struct Convolution: Codable, Sendable, Equatable {
    public var kernel: Int, stride: Int, padding: Int
    public var weight: String
    public var bias: String?
    public var activation: ActivationFunction
    public var slope: String?
    /// Adds to the output tensor's values instead of overwriting them (residual connections).
    public var accumulate: Bool
}

public struct DepthwiseConvolution: Codable, Sendable, Equatable {
    public var kernelHeight: Int, kernelWidth: Int, stride: Int, padTop: Int, padLeft: Int
    public var channelOffset: Int, channels: Int
    public var weight: String
    public var bias: String?
    public var activation: ActivationFunction
    public var slope: String?
}

public struct AttentionGates: Codable, Sendable, Equatable {
    /// `[c, hidden]` and `[hidden]`; h_swish after it.
    public var conv1Weight: String, conv1Bias: String
    /// `[hidden, c]` and `[c]`: rows, then columns, each followed by a sigmoid.
    public var conv2Weight: String, conv2Bias: String
    public var conv3Weight: String, conv3Bias: String
}

public struct ChannelConvolution: Codable, Sendable, Equatable {
    /// PyTorch's Conv1d weight `[outputs, positions, kernel]` and bias `[outputs]`.
    public var weight: String, bias: String
}

/// A module of the original PyTorch graph that an operation was folded from.
public struct Source: Codable, Sendable, Equatable {
    public enum Kind: Codable, Sendable, Equatable {
        /// A convolution: multiply-accumulates per output element.
        case convolution(macsPerOutput: Int)
        case linear(macsPerOutput: Int)
        case batchNorm
        case prelu
        case adaptivePool
        /// A module in the checkpoint that the forward pass does not run.
        case unused
    }
    /// PyTorch module path (`features.3.model.0.conv.conv`).
    public var name: String
    public var kind: Kind
    /// Learnable parameters of the module.
    public var parameters: Int
}
