import ArgumentParser
import FEREngine
import Foundation

struct Flops: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count parameters and multiply-accumulates per layer and in total (batch 1).",
        discussion: """
            Parameters count as PyTorch's sum(p.numel() for p in model.parameters()). MACs are given
            in two conventions: fvcore's (convolutions and linear layers as multiply-accumulates,
            BatchNorm 2 per element, adaptive pooling 1 per input element) and thop's (BatchNorm 4 per
            element, PReLU 1 per element, adaptive pooling window+1 per output element); both agree
            with those tools on the reference models. The folded graph is what this runtime executes:
            BatchNorm folded away, RepVGGDW merged, gating products counted.

            Examples:
              fer-infer flops
              fer-infer flops --layers --model my-checkpoint.pth
              fer-infer flops --json
            """)

    @Option(help: "Model file (default: \(ModelLocator.defaultName)).")
    var model: String?

    @Flag(help: "Print every layer, not only the per-stage summary.")
    var layers = false

    @Flag(help: "Print JSON (always includes every layer).")
    var json = false

    func run() throws {
        let path = try ModelLocator.resolve(model)
        let model: FERModel
        do { model = try FERModel(contentsOf: path) } catch { throw CLIError("\(path): \(error)") }
        let report = model.complexity()
        if json {
            let rows: [[String: Any]] = report.layers.map {
                ["name": $0.name, "output_shape": $0.outputShape, "parameters": $0.parameters,
                 "macs": $0.macs, "fvcore": $0.fvcore, "thop": $0.thop]
            }
            var object: [String: Any] = [
                "model": path, "architecture": report.architecture.description, "layers": rows,
                "macs_fvcore": report.fvcoreTotal, "macs_thop": report.thopTotal, "macs_conv_linear": report.macsTotal,
                "folded_macs": report.foldedMACs, "folded_parameters": report.foldedParameters,
            ]
            if let p = report.parameters { object["parameters"] = p }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        func millions(_ v: Int) -> String { String(format: "%.1f M", Double(v) / 1e6) }
        print("\(report.architecture), batch 1, input \(model.graph.inputChannels)x\(model.inputSize.height)x\(model.inputSize.width)")
        if layers {
            print(pad("layer", 52) + pad("output", 16) + lpad("params", 10) + lpad("fvcore", 12) + lpad("thop", 12))
            for l in report.layers {
                print(pad(l.name, 52) + pad(l.outputShape.map(String.init).joined(separator: "x"), 16)
                      + lpad("\(l.parameters)", 10) + lpad("\(l.fvcore)", 12) + lpad("\(l.thop)", 12))
            }
            print("")
        }
        // Per stage: the first one or two components of the layer name.
        var order: [String] = []
        var sums: [String: (p: Int, f: Int, t: Int)] = [:]
        for l in report.layers {
            let parts = l.name.split(separator: ".")
            let stage = parts.first == "features" || parts.first == "sb" ? parts.prefix(2).joined(separator: ".") : String(parts[0])
            if sums[stage] == nil { order.append(stage) }
            let s = sums[stage] ?? (0, 0, 0)
            sums[stage] = (s.p + l.parameters, s.f + l.fvcore, s.t + l.thop)
        }
        print(pad("stage", 24) + lpad("params", 12) + lpad("MACs fvcore", 14) + lpad("MACs thop", 14))
        for stage in order {
            let s = sums[stage]!
            print(pad(stage, 24) + lpad("\(s.p)", 12) + lpad(millions(s.f), 14) + lpad(millions(s.t), 14))
        }
        print("")
        if let p = report.parameters { print("parameters (PyTorch):  \(p)") }
        print("MACs, fvcore convention: \(millions(report.fvcoreTotal))  (\(report.fvcoreTotal))")
        print("MACs, thop convention:   \(millions(report.thopTotal))  (\(report.thopTotal))")
        print("folded graph: \(report.foldedParameters) parameters, \(millions(report.foldedMACs)) MACs")
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
    private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
}
