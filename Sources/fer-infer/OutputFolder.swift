import FERImage

/// A folder `fer-infer` writes PNGs into per input (`--crops`, `--annotate`): made once, and each
/// input's file stem claimed by that input, so two inputs never overwrite each other's files.
struct OutputFolder {
    /// The option that named it, and the folder as given (for messages).
    let option: String, shown: String
    private let path: [UInt8]
    private var owners: [[UInt8]: String] = [:]
    /// The run's input files: never written over, even when the folder is theirs.
    private let inputs: [FileIdentity: [UInt8]]

    /// The folder named by `argument` (nil: the option was not given), made if missing.
    init?(option: String, argument: String?, inputs: [FileIdentity: [UInt8]]) throws {
        guard let argument else { return nil }
        self.option = option
        self.inputs = inputs
        shown = argument
        path = FileNames.commandLineBytes(for: [argument])[0]
        do { try FileNames.makeDirectory(path) } catch { throw CLIError("\(option): \(error)") }
    }

    /// The stem of `raw` (the input's path bytes) for `input`, or the message saying which input
    /// already wrote files under it; `what` and `pattern` describe the files (`crops`, `STEM_face<k>.png`).
    mutating func claim(_ raw: [UInt8], for input: String, what: String, pattern: (String) -> String) -> Result<[UInt8], CLIError> {
        let stem = FileNames.stem(of: raw)
        if let other = owners[stem], other != input {
            return .failure(CLIError("\(input): its \(what) would overwrite those of \(other) (same name \(pattern(FileNames.display(stem))) in \(shown)); not written"))
        }
        owners[stem] = input
        return .success(stem)
    }

    /// Writes `image` as PNG under `name` in the folder; returns the file's name as shown. Refuses a
    /// name that is one of the inputs.
    func writePNG(_ image: RGBImage, name: [UInt8]) throws -> String {
        let file = FileNames.join(path, name)
        if let identity = FileNames.identity(of: file), let input = inputs[identity] {
            throw CLIError("\(FileNames.display(file)) is the input \(FileNames.display(input)); not overwritten")
        }
        try FileNames.write(try PNGEncoding.encode(image), to: file)
        return FileNames.display(file)
    }
}
