import FERImage

/// Why a labelled dataset could not be read: always one line, naming the file or folder at fault
/// and, for a line of a label file, its number (`file:line: message`).
public struct DatasetError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public enum Kind: Equatable, Sendable {
        /// The dataset path does not exist or cannot be read (`reason` from the system).
        case unreadable(reason: String)
        /// The RAF-DB label file `EmoLabel/list_patition_label.txt` is missing (`file` is where it
        /// should be).
        case missingLabelFile
        /// A label-file line is not `NAME LABEL` (RAF-DB) or `path,label` (lists).
        case malformedLine(expected: String, got: String)
        /// A label is a number outside `range`.
        case labelOutOfRange(label: String, range: ClosedRange<Int>)
        /// A label (folder name or list label) names none of the model's classes.
        case unknownClass(name: String, classes: [String])
        /// Two dataset labels map to the same model class.
        case duplicateClass(name: String, other: String, modelClass: String)
        /// A class folder holds no images.
        case emptyFolder
        /// The dataset directory holds no class folders.
        case noClassFolders
        /// The label file lists no image (for the RAF-DB split `split`, when there is one).
        case noImages(split: String?)
        /// The RAF-DB layout needs a model whose classes include RAF-DB's seven names.
        case notRAFDBClasses(missing: String, classes: [String])
        /// A label-file line is longer than `limit` bytes; `start` is its first bytes.
        case lineTooLong(limit: Int, start: String)
        /// A label-file line holds a NUL byte at `column` (1-based, in bytes): no path may contain one, and
        /// the system would read the name only up to it.
        case nulByte(column: Int)
        /// The line lists `image` with `label`, but line `otherLine` lists it with `otherLabel`, a different class.
        case conflictingLabels(image: String, label: String, otherLine: Int, otherLabel: String)
    }

    /// Most bytes of a line quoted in a message: 200.
    public static let quotedBytes = 200

    /// The file or folder at fault.
    public var file: String
    /// 1-based line of `file`, for label files.
    public var line: Int?
    public var kind: Kind

    public init(file: String, line: Int? = nil, kind: Kind) {
        self.file = file
        self.line = line
        self.kind = kind
    }

    /// The problem without the location.
    public var message: String {
        switch kind {
        case .unreadable(let reason): return "cannot read the dataset: \(reason)"
        case .missingLabelFile: return "missing: RAF-DB's label file (EmoLabel/list_patition_label.txt) is not there"
        case .malformedLine(let expected, let got): return "expected \(expected), got '\(Self.quote(got))'"
        case .labelOutOfRange(let label, let range):
            return "label \(label) is out of range \(range.lowerBound)...\(range.upperBound)"
        case .unknownClass(let name, let classes):
            return "'\(name)' is not a class of the model (classes: \(classes.joined(separator: ", ")); "
                + "use an index, one of these names, or --labels)"
        case .duplicateClass(let name, let other, let modelClass):
            return "'\(name)' and '\(other)' both map to the model's class \(modelClass)"
        case .emptyFolder: return "class folder holds no images (.png, .jpg, .jpeg)"
        case .noClassFolders: return "no class folders (expected one folder of images per class, or a RAF-DB tree)"
        case .noImages(let split): return split.map { "lists no \($0) images" } ?? "lists no images"
        case .notRAFDBClasses(let missing, let classes):
            return "RAF-DB class \(missing) is not a class of the model (classes: \(classes.joined(separator: ", ")); pass --labels)"
        case .lineTooLong(let limit, let start):
            return "line is over the \(limit)-byte limit (it begins '\(Self.quote(start))')"
        case .nulByte(let column): return "NUL byte at column \(column); a path cannot contain one"
        case .conflictingLabels(let image, let label, let otherLine, let otherLabel):
            return "\(Self.quote(image)) is labelled \(Self.quote(label)) here but \(Self.quote(otherLabel)) on line \(otherLine)"
        }
    }

    /// `text` for a message: control characters escaped, cut after ``quotedBytes`` bytes (at a character
    /// boundary) with an ellipsis.
    static func quote(_ text: String) -> String {
        var shown = FileNames.display(text)
        if shown.utf8.count > quotedBytes {
            var cut = ""
            for c in shown {
                if cut.utf8.count + c.utf8.count > quotedBytes { break }
                cut.append(c)
            }
            shown = cut + "…"
        }
        return shown
    }

    /// `file:line: message`, or `file: message` without a line.
    public var description: String {
        (line.map { "\(file):\($0)" } ?? file) + ": " + message
    }
}
