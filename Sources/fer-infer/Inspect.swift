import ArgumentParser
import FERCheckpoint
import FEREngine

/// `fer-infer inspect FILE`: what a checkpoint holds, without running anything in it.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint: format, structure, metadata, architecture and every tensor.",
        discussion: """
            Reads any checkpoint the runtime imports (zip or legacy torch.save files in every structure,
            .safetensors) with the safe importer: nothing in the file is executed. Prints the container,
            where the tensors were found, the non-tensor values (e.g. iter), the architecture when the
            tensor names match one the runtime knows, then one line per tensor: name, dtype, shape.

            Example:
              fer-infer inspect weights/lfnsb7-seeded.pth
            """)

    @Argument(help: "The checkpoint to describe.")
    var file: String

    func run() throws {
        let checkpoint: Checkpoint
        do {
            checkpoint = try Checkpoint.load(path: file)
        } catch {
            throw CLIError("\(file): \(error)")
        }
        print(Inspect.report(checkpoint), terminator: "")
    }

    /// The text `inspect` prints for `checkpoint`.
    static func report(_ checkpoint: Checkpoint) -> String {
        var out = ""
        out += "format: \(checkpoint.container.rawValue)\n"
        out += "structure: \(checkpoint.structure)\n"
        if !checkpoint.metadataKeys.isEmpty {
            out += "metadata:\n"
            for key in checkpoint.metadataKeys {
                let value = checkpoint.metadata[key] ?? ""
                out += "  \(key): \(value.count > 120 ? String(value.prefix(120)) + "…" : value)\n"
            }
        }
        let shapes = Dictionary(checkpoint.tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        if let architecture = try? Architecture.recognise(keys: Set(shapes.keys), shapeOf: { shapes[$0] }) {
            out += "architecture: \(architecture)\n"
        } else {
            out += "architecture: not recognised\n"
        }
        let elements = checkpoint.tensors.reduce(0) { $0 + $1.count }
        let bytes = checkpoint.tensors.reduce(0) { $0 + $1.byteCount }
        out += "tensors: \(checkpoint.tensors.count) (\(elements) elements, \(bytes) bytes)\n"
        let width = min(72, checkpoint.tensors.map(\.name.count).max() ?? 0)
        for t in checkpoint.tensors {
            let pad = String(repeating: " ", count: max(0, width - t.name.count))
            out += "  \(t.name)\(pad)  \(t.dtype.rawValue.padding(8))  \(t.shape)\n"
        }
        return out
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
