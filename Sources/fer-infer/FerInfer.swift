import ArgumentParser
import Foundation

/// `fer-infer`: classify face crops with LFNSB models, inspect and convert checkpoints.
@main
struct FerInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fer-infer",
        abstract: "Run LFNSB facial-expression models (and LFN, MFN, DDAMNet) without Python.",
        discussion: """
            The default subcommand is `classify`: `fer-infer INPUT...` is `fer-infer classify INPUT...`.
            Models are PyTorch checkpoints as the authors' scripts write them (any form: training dict,
            bare state_dict, DataParallel, whole pickled module, legacy format) or fused .safetensors
            files made by `fer-infer export`.
            """,
        subcommands: [Classify.self, Eval.self, Inspect.self, Export.self, Bench.self, Flops.self],
        defaultSubcommand: Classify.self)

    /// Exit status: 0 success, 1 some inputs or the model failed, 2 usage errors.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            if let failure = error as? CLIError {
                FileHandle.standardError.write(Data("fer-infer: \(failure)\n".utf8))
                Foundation.exit(1)
            }
            exit(withError: error)
        }
    }
}
