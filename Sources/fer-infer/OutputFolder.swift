import FERImage

/// A folder `fer-infer` writes PNGs into per input (`--crops`, `--annotate`): made once, and each
/// input's file stem claimed by that input, so two inputs never overwrite each other's files.
struct OutputFolder {
    /// The option that named it, and the folder as given (for messages).
    let option: String, shown: String
    private let path: [UInt8]
    private var owners: [[UInt8]: String] = [:]

    /// The folder named by `argument` (nil: the option was not given), made if missing.
    init?(option: String, argument: String?) throws {
        guard let argument else { return nil }
        self.option = option
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

    /// Writes `image` as PNG under `name` in the folder; returns the file's name as shown.
    func writePNG(_ image: RGBImage, name: [UInt8]) throws -> String {
        let file = FileNames.join(path, name)
        try FileNames.write(try PNGEncoding.encode(image), to: file)
        return FileNames.display(file)
    }
}
