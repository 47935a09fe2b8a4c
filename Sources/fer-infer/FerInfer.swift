import ArgumentParser

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
        subcommands: [Classify.self, Inspect.self, Export.self],
        defaultSubcommand: Classify.self)
}
