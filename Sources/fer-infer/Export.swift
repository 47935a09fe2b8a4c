import ArgumentParser
import FERCheckpoint
import FEREngine

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint as .safetensors: fused (folded, packed) by default, or the raw tensors with --raw.",
        discussion: """
            Without --raw the file holds the folded weights the runtime runs on, with metadata (architecture,
            classes, labels, format version); `fer-infer --model OUT.safetensors` loads it directly, faster
            than importing the .pth, with identical outputs.
            With --raw the file holds the checkpoint's model tensors exactly as stored (same names after
            unwrapping, same dtypes and values), for checking a checkpoint with standard tools.

            Examples:
              fer-infer export weights/lfnsb7-seeded.pth lfnsb7-fused.safetensors
              fer-infer export --raw weights/lfnsb7-seeded.pth lfnsb7-raw.safetensors
            """)

    @Argument(help: "The checkpoint to read.")
    var input: String

    @Argument(help: "The .safetensors file to write.")
    var output: String

    @Flag(help: "Write the stored tensors unchanged instead of the fused model.")
    var raw = false

    func run() throws {
        do {
            if raw {
                try exportRaw(checkpoint: try Checkpoint.load(path: input), to: output)
            } else {
                let model = try FERModel(contentsOf: input)
                let labels = model.architecture.classCount.flatMap { LabelSet.defaultFor(classes: $0)?.names }
                try FusedModelFile.write(model, to: output, labels: labels)
            }
        } catch {
            throw CLIError("\(input): \(error)")
        }
    }
}
