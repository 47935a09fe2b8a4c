/// The model families the runtime runs, recognised from a checkpoint's key layout.
public enum Architecture: Equatable, Sendable, CustomStringConvertible {
    /// LFNSB classifier (authors' `LFNSB2`): LFN backbone, Spatial Bias head, `classes` logits.
    case lfnsb(classes: Int)
    /// LFN backbone as a face embedder (256-wide, L2-normalised).
    case lfn
    /// MixedFeatureNet backbone as a face embedder (512-wide, L2-normalised).
    case mfn
    /// DDAMNet classifier on the MFN backbone with `heads` attention heads.
    case ddamnet(classes: Int, heads: Int)
    /// RetinaFace face detector with the MobileNet-0.25 body (any input size).
    case retinaFace

    public var description: String {
        switch self {
        case .lfnsb(let classes): return "LFNSB (\(classes) classes)"
        case .lfn: return "LFN (embedding)"
        case .mfn: return "MFN (embedding)"
        case .ddamnet(let classes, let heads): return "DDAMNet (\(classes) classes, \(heads) head\(heads == 1 ? "" : "s"))"
        case .retinaFace: return "RetinaFace (MobileNet-0.25)"
        }
    }

    /// Number of classes for a classifier, nil for an embedder.
    public var classCount: Int? {
        switch self {
        case .lfnsb(let classes), .ddamnet(let classes, _): return classes
        case .lfn, .mfn, .retinaFace: return nil
        }
    }

    /// Whether the backbone is MixedFeatureNet (PReLU stems, 512-wide output) rather than LFN.
    var usesMFNBackbone: Bool {
        switch self {
        case .mfn, .ddamnet: return true
        case .lfnsb, .lfn, .retinaFace: return false
        }
    }

    /// Short identifier used in fused model files: `lfnsb`, `lfn`, `mfn`, `ddamnet`.
    public var family: String {
        switch self {
        case .lfnsb: return "lfnsb"
        case .lfn: return "lfn"
        case .mfn: return "mfn"
        case .ddamnet: return "ddamnet"
        case .retinaFace: return "retinaface"
        }
    }

    /// Recognises the architecture from checkpoint key names (no flags needed).
    public static func recognise(keys: Set<String>, shapeOf: (String) -> [Int]?) throws -> Architecture {
        if keys.contains("sb.sb_conv.weight"), let fc = shapeOf("fc.weight"), fc.count == 2 {
            return .lfnsb(classes: fc[0])
        }
        if keys.contains("cat_head0.CoordAtt.conv1.weight"), let fc = shapeOf("fc.weight"), fc.count == 2 {
            var heads = 0
            while keys.contains("cat_head\(heads).CoordAtt.conv1.weight") { heads += 1 }
            return .ddamnet(classes: fc[0], heads: heads)
        }
        if keys.contains("body.stage1.0.0.weight"), keys.contains("ClassHead.0.conv1x1.weight") {
            return .retinaFace
        }
        if keys.contains("conv_6_dw.conv.weight"), keys.contains("linear.weight") {
            if keys.contains("conv1.c.weight") { return .lfn }
            if keys.contains("conv1.conv.weight") { return .mfn }
        }
        throw EngineError.unrecognisedArchitecture(sampleKeys: Array(keys.sorted().prefix(8)))
    }

    /// The checkpoint prefix of backbone stage `index` (0...8).
    func stagePrefix(_ index: Int) -> String {
        switch self {
        case .lfnsb, .ddamnet, .retinaFace: return "features.\(index)"
        case .lfn: return ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv6_sep"][index]
        case .mfn: return ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep"][index]
        }
    }
}
