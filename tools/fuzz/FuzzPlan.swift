// libFuzzer target over plan building: shapes of a valid state_dict, mutated, go through
// architecture recognition, the builders (BatchNorm folding, shape chaining) and the execution
// plan (shape inference, memory planning); whatever builds runs one forward pass. A thrown
// EngineError is a correct outcome (a refusal); a crash, a sanitizer report, a timeout or an
// out-of-memory is a bug. See README.md.
//
// Input: byte 0 picks the base model (tiny LFNSB, LFN, DDAMNet on MFN, or RetinaFace), bytes 1-2
// the detector's input size, then each 3 bytes mutate one tensor: (index, what, value), where
// `what` picks a dimension to set to `value`, a dimension to add, the last one to drop, or the
// tensor to remove.
import FEREngine
import FERTensor
import Glibc

/// A state_dict's names and shapes, as torch.save would list them.
struct Keys {
    var list: [(String, [Int])] = []
    mutating func add(_ name: String, _ shape: [Int]) { list.append((name, shape)) }
    mutating func conv(_ p: String, _ cout: Int, _ cin: Int, _ k: Int, bias: Bool = false) {
        add("\(p).weight", [cout, cin, k, k])
        if bias { add("\(p).bias", [cout]) }
    }
    mutating func bn(_ p: String, _ c: Int) {
        for s in ["weight", "bias", "running_mean", "running_var"] { add("\(p).\(s)", [c]) }
        add("\(p).num_batches_tracked", [])
    }
    /// A MixBlock: expand, mixed depthwise groups (split, kernel), coordinate attention, project.
    mutating func mix(_ p: String, _ cin: Int, _ width: Int, _ cout: Int, _ groups: [(Int, Int)], mip: Int, mfn: Bool) {
        conv("\(p).conv.conv", width, cin, 1); bn("\(p).conv.bn", width); add("\(p).conv.prelu.weight", [width])
        for (i, g) in groups.enumerated() { add("\(p).conv_dw.mixed_depthwise_conv.\(i).weight", [g.0, 1, g.1, g.1]) }
        if mfn { bn("\(p).conv_dw.bn", width); add("\(p).conv_dw.prelu.weight", [width]) }
        conv("\(p).CA.conv1", mip, width, 1, bias: true); bn("\(p).CA.bn1", mip)
        conv("\(p).CA.conv2", width, mip, 1, bias: true); conv("\(p).CA.conv3", width, mip, 1, bias: true)
        conv("\(p).project.conv", cout, width, 1); bn("\(p).project.bn", cout)
    }
}

/// Backbone stages at tiny widths (8 and 16 channels, one residual block per repeated stage).
func backbone(_ k: inout Keys, names: [String], mfn: Bool) {
    let stem = mfn ? "conv" : "c"
    k.conv("\(names[0]).\(stem)", 8, 3, 3); k.bn("\(names[0]).bn", 8); if mfn { k.add("\(names[0]).prelu.weight", [8]) }
    k.conv("\(names[1]).\(stem)", 8, 1, 3); k.bn("\(names[1]).bn", 8); if mfn { k.add("\(names[1]).prelu.weight", [8]) }
    k.mix(names[2], 8, 12, 8, [(8, 3), (4, 5)], mip: 8, mfn: mfn)
    k.mix("\(names[3]).model.0", 8, 12, 8, [(12, 3)], mip: 8, mfn: mfn)
    k.mix(names[4], 8, 16, 16, [(10, 3), (6, 5)], mip: 8, mfn: mfn)
    k.mix("\(names[5]).model.0", 16, 16, 16, [(16, 3)], mip: 8, mfn: mfn)
    k.mix(names[6], 16, 24, 16, [(8, 3), (8, 5), (8, 7)], mip: 8, mfn: mfn)
    k.mix("\(names[7]).model.0", 16, 16, 16, [(8, 3), (8, 5)], mip: 8, mfn: mfn)
}

let bases: [Keys] = {
    let features = (0...8).map { "features.\($0)" }
    var lfnsb = Keys()
    backbone(&lfnsb, names: features, mfn: false)
    lfnsb.conv("features.8.conv.c", 16, 1, 3); lfnsb.bn("features.8.conv.bn", 16)
    lfnsb.conv("features.8.conv1", 16, 1, 1, bias: true); lfnsb.bn("features.8.bn", 16)
    lfnsb.conv("sb.feature_reduction.0", 6, 16, 1); lfnsb.bn("sb.feature_reduction.1", 6)
    lfnsb.add("sb.sb_conv.weight", [4, 4, 3]); lfnsb.add("sb.sb_conv.bias", [4])
    lfnsb.add("fc.weight", [3, 16]); lfnsb.add("fc.bias", [3]); lfnsb.bn("bn", 3)

    var lfn = Keys()
    let lfnNames = ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv6_sep"]
    backbone(&lfn, names: lfnNames, mfn: false)
    lfn.conv("conv6_sep.conv.c", 16, 1, 3); lfn.bn("conv6_sep.conv.bn", 16)
    lfn.conv("conv6_sep.conv1", 16, 1, 1, bias: true); lfn.bn("conv6_sep.bn", 16)
    lfn.conv("conv_6_dw.conv", 16, 1, 7); lfn.bn("conv_6_dw.bn", 16)
    lfn.add("linear.weight", [12, 16]); lfn.bn("bn", 12)

    var ddam = Keys()
    backbone(&ddam, names: features, mfn: true)
    ddam.conv("features.8.conv", 24, 16, 1); ddam.bn("features.8.bn", 24); ddam.add("features.8.prelu.weight", [24])
    for h in 0..<2 {
        let p = "cat_head\(h).CoordAtt"
        ddam.add("\(p).Linear_h.conv.weight", [24, 1, 1, 7]); ddam.bn("\(p).Linear_h.bn", 24)
        ddam.add("\(p).Linear_w.conv.weight", [24, 1, 7, 1]); ddam.bn("\(p).Linear_w.bn", 24)
        ddam.conv("\(p).Linear.conv", 24, 1, 7); ddam.bn("\(p).Linear.bn", 24)
        ddam.conv("\(p).conv1", 8, 24, 1, bias: true); ddam.bn("\(p).bn1", 8)
        ddam.conv("\(p).conv2", 24, 8, 1, bias: true); ddam.conv("\(p).conv3", 24, 8, 1, bias: true)
    }
    ddam.conv("Linear.conv", 24, 1, 7); ddam.bn("Linear.bn", 24)
    ddam.add("fc.weight", [5, 24]); ddam.add("fc.bias", [5]); ddam.bn("bn", 5)

    var retina = Keys()
    func cbl(_ p: String, _ cout: Int, _ cin: Int, _ k: Int) { retina.conv("\(p).0", cout, cin, k); retina.bn("\(p).1", cout) }
    func dw(_ p: String, _ cin: Int, _ cout: Int) { cbl(p, cin, 1, 3); retina.conv("\(p).3", cout, cin, 1); retina.bn("\(p).4", cout) }
    cbl("body.stage1.0", 4, 3, 3)
    for (i, (a, b)) in [(4, 4), (4, 8), (8, 8), (8, 8), (8, 8)].enumerated() { dw("body.stage1.\(i + 1)", a, b) }
    dw("body.stage2.0", 8, 12); dw("body.stage2.1", 12, 12)
    dw("body.stage3.0", 12, 16)
    cbl("fpn.output1", 8, 8, 1); cbl("fpn.output2", 8, 12, 1); cbl("fpn.output3", 8, 16, 1)
    cbl("fpn.merge1", 8, 8, 3); cbl("fpn.merge2", 8, 8, 3)
    for s in 1...3 {
        cbl("ssh\(s).conv3X3", 4, 8, 3); cbl("ssh\(s).conv5X5_1", 2, 8, 3); cbl("ssh\(s).conv5X5_2", 2, 2, 3)
        cbl("ssh\(s).conv7X7_2", 2, 2, 3); cbl("ssh\(s).conv7x7_3", 2, 2, 3)
    }
    for (head, k) in [("ClassHead", 4), ("BboxHead", 8), ("LandmarkHead", 20)] {
        for i in 0..<3 { retina.conv("\(head).\(i).conv1x1", k, 8, 1, bias: true) }
    }
    return [lfnsb, lfn, ddam, retina]
}()

/// FUZZ_PLAN_VERBOSE=1 prints each input's outcome (for checking the seeds).
let verbose = getenv("FUZZ_PLAN_VERBOSE") != nil

/// Values are never what is tested; a tensor the importer would refuse as too large throws.
struct TooLarge: Error {}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let base = Int(data[0]) % bases.count
    var list = bases[base].list
    let height = 1 + Int(data[1]) % 96, width = 1 + Int(data[2]) % 96
    var i = 3
    while i + 3 <= size {
        let index = Int(data[i]) % list.count, what = Int(data[i + 1]), value = Int(data[i + 2])
        var shape = list[index].1
        switch what % 8 {
        case 0, 1, 2, 3: if !shape.isEmpty { shape[what % shape.count] = value % 40 }
        case 4: shape.append(value % 4)
        case 5: if !shape.isEmpty { shape.removeLast() }
        case 6: shape = shape.map { max(0, $0 + (value % 5) - 2) }
        default: list.remove(at: index)
        }
        if list.indices.contains(index), what % 8 != 7 { list[index].1 = shape }
        if list.isEmpty { return 0 }
        i += 3
    }
    let tensors = list.map { name, shape in
        (name: name, tensor: RawTensor(shape: shape, values: {
            let count = shape.reduce(1, *)
            guard count <= 1 << 22 else { throw TooLarge() }
            return (0..<count).map { Float($0 % 7) * 0.01 }
        }))
    }
    do {
        let model = try FERModel(stateDict: tensors)
        let (h, w) = model.architecture == .retinaFace ? (height, width) : (model.inputSize.height, model.inputSize.width)
        let session = try model.makeSession(batch: 1, height: h, width: w)
        let input = [Float](repeating: 0.5, count: 3 * h * w)
        try input.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 1) }
        if verbose { print("ran \(model.architecture) at \(h)x\(w): \(Array(session.outputs.prefix(3)))") }
    } catch {
        if verbose { print("refused: \(String(describing: error).prefix(300))") }
    }
    return 0
}
