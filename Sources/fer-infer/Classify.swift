import ArgumentParser
import FEREngine
import FERKernels
import FERTensor
import Foundation

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify inputs (or embed them, for LFN/MFN models).",
        discussion: """
            Inputs are NumPy .npy float32 arrays shaped [N,3,112,112] or [3,112,112], already
            normalised with the ImageNet mean and std, as the authors' evaluation transform gives them.

            Examples:
              fer-infer classify --json batch.npy
              fer-infer classify --model my-lfnsb.pth --top-k 3 face.npy
            """)

    @Argument(help: "Input files (.npy).")
    var inputs: [String]

    @Option(help: "Model file: a PyTorch checkpoint (.pth/.pt) or a fused .safetensors. Default: \(ModelLocator.defaultName).")
    var model: String?

    @Flag(help: "Print JSON: per sample, logits (or embedding), probabilities, label and index.")
    var json = false

    @Option(name: .customLong("top-k"), help: "Print the K most probable labels per sample.")
    var topK = 1

    @Option(help: "Threads for the runtime (BLAS included).")
    var threads = 1

    func validate() throws {
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        BLASThreads.set(threads)
        let modelPath = try ModelLocator.resolve(model)
        let model: FERModel
        do { model = try FERModel(contentsOf: modelPath) } catch {
            throw CLIError("\(modelPath): \(error)")
        }
        let labels = model.architecture.classCount.flatMap { LabelSet.defaultFor(classes: $0)?.names }
        var failures = 0
        var records: [[String: Any]] = []
        for path in inputs {
            do {
                let tensor = try NPY.read(path: path)
                let prediction = try model.predict(tensor)
                let n = prediction.outputs.shape[0], width = prediction.outputs.shape[1]
                for i in 0..<n {
                    let outputs = Array(prediction.outputs.data[i * width..<(i + 1) * width])
                    var record: [String: Any] = ["input": path, "index": i]
                    if let probabilities = prediction.probabilities {
                        let probs = Array(probabilities.data[i * width..<(i + 1) * width])
                        let order = probs.indices.sorted { probs[$0] > probs[$1] }
                        let name = { (k: Int) in labels?[k] ?? "class \(k)" }
                        record["logits"] = outputs
                        record["probabilities"] = probs
                        record["label"] = name(order[0])
                        record["class"] = order[0]
                        record["probability"] = probs[order[0]]
                        if let labels { record["labels"] = labels }
                        if !json {
                            let top = order.prefix(topK).map { "\(name($0)) \(String(format: "%.3f", probs[$0]))" }
                            print("\(path)\(n > 1 ? "[\(i)]" : ""): \(top.joined(separator: ", "))")
                        }
                    } else {
                        record["embedding"] = outputs
                        if !json {
                            print("\(path)\(n > 1 ? "[\(i)]" : ""): embedding of \(width) values, first \(outputs.prefix(4).map { String(format: "%.4f", $0) })")
                        }
                    }
                    records.append(record)
                }
            } catch {
                failures += 1
                FileHandle.standardError.write(Data("fer-infer: \(path): \(error)\n".utf8))
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["model": modelPath, "architecture": model.architecture.description, "results": records], options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

/// Finds the default model: `$FER_MODEL`, else `weights/lfnsb7-seeded.pth` in the working
/// directory or beside the package the executable was built in.
enum ModelLocator {
    static let defaultName = "weights/lfnsb7-seeded.pth"

    static func resolve(_ explicit: String?) throws -> String {
        if let explicit { return explicit }
        if let env = ProcessInfo.processInfo.environment["FER_MODEL"], !env.isEmpty { return env }
        var candidates = [FileManager.default.currentDirectoryPath + "/" + defaultName]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent(defaultName).path)
            dir = dir.deletingLastPathComponent()
        }
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("no model given and \(defaultName) not found (pass --model FILE or set FER_MODEL)")
    }
}

/// A failure reported as one line on stderr with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
