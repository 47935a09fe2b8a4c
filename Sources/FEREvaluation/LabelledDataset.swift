import FEREngine
import FERImage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a labelled dataset is laid out on disk.
public enum DatasetLayout: String, Sendable, CaseIterable {
    /// RAF-DB basic: `EmoLabel/list_patition_label.txt` (lines `test_0001.jpg 5`, labels 1...7 in
    /// RAF-DB order) and `Image/aligned/test_0001_aligned.jpg`.
    case rafdb
    /// One folder of images per class (AffectNet exports, torchvision's `ImageFolder`); folder
    /// names are class indices or class names.
    case folders
    /// A CSV or TSV file of `path,label` lines (label as index or name; paths relative to the file).
    case list

    /// How the layout is called in reports.
    public var title: String {
        switch self {
        case .rafdb: return "RAF-DB basic"
        case .folders: return "class-per-folder"
        case .list: return "label list"
        }
    }
}

/// Which half of RAF-DB basic to read.
public enum RAFDBSplit: String, Sendable, CaseIterable {
    case test, train
}

/// One image of a dataset with its true class (an index into the model's classes).
public struct LabelledImage: Equatable, Sendable {
    /// The file, as bytes (Linux names need not be UTF-8).
    public var path: [UInt8]
    /// The model class the dataset says this image shows.
    public var label: Int
    /// Where the label came from: `file:line` for label files, the folder for class folders.
    public var source: String

    public init(path: [UInt8], label: Int, source: String) {
        self.path = path
        self.label = label
        self.source = source
    }

    /// The path for messages and reports (bytes that are not UTF-8 shown as `\xNN`).
    public var displayPath: String { FileNames.display(path) }
}

/// How one label of the dataset maps to a class of the model.
public struct ClassMapping: Equatable, Sendable {
    /// The label as the dataset writes it: a RAF-DB number, a folder name, a list label.
    public var datasetLabel: String
    /// The model class it means.
    public var modelClass: Int
    /// That class's name.
    public var modelName: String
    /// How: `index` (a number taken as the model's class index), `name` (matched to the model's
    /// class names), or `rafdb` (RAF-DB's number, through RAF-DB's name for it).
    public var rule: String

    public init(datasetLabel: String, modelClass: Int, modelName: String, rule: String) {
        self.datasetLabel = datasetLabel
        self.modelClass = modelClass
        self.modelName = modelName
        self.rule = rule
    }
}

/// A labelled test set read from one of the ``DatasetLayout``s, its labels mapped to a model's
/// classes.
///
/// Labels given as names match the model's class names case-insensitively, with the usual English
/// variants of the seven expressions taken as the same name (happy = Happiness, sad = Sadness,
/// angry = Anger, surprised = Surprise, fearful = Fear, disgusted = Disgust); numbers are class
/// indices (RAF-DB's 1...7 are its own order, mapped through its names). Anything else is a
/// ``DatasetError`` naming the file and line: a mismatch is never guessed.
public struct LabelledDataset: Sendable {
    /// The path given.
    public var root: String
    public var layout: DatasetLayout
    /// The RAF-DB split read (RAF-DB only).
    public var split: RAFDBSplit?
    /// The images in dataset order (label-file order; folders and files sorted by name).
    public var images: [LabelledImage]
    /// The dataset's labels and the model classes they map to, in the order first met.
    public var mapping: [ClassMapping]
    /// Label-file lines that repeat an earlier line's image with the same class, as `file:line`: each image
    /// is evaluated once, and these are counted in the report. (The same image with another class is a
    /// ``DatasetError`` naming both lines.)
    public var duplicates: [String] = []

    /// Most bytes in one line of a label file: 64 KiB (a Linux path holds at most 4096). A longer line is
    /// refused as soon as it is met, naming it and quoting its start.
    public static let maxLineBytes = 1 << 16

    /// The RAF-DB label file, relative to the dataset root.
    public static let rafdbLabelFile = "EmoLabel/list_patition_label.txt"
    /// RAF-DB's aligned images, relative to the dataset root.
    public static let rafdbImageFolder = "Image/aligned"

    /// The layout of `path`: a file is a list; a directory with `EmoLabel/` or `Image/aligned/`
    /// is RAF-DB; any other directory is class-per-folder.
    public static func detectLayout(of path: String) throws(DatasetError) -> DatasetLayout {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DatasetError(file: path, kind: .unreadable(reason: String(cString: strerror(errno))))
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return .list }
        if ImageDecoder.isDirectory(join(path, "EmoLabel")) || ImageDecoder.isDirectory(join(path, rafdbImageFolder)) {
            return .rafdb
        }
        return .folders
    }

    /// Reads the dataset at `path` (layout detected unless given) for a model whose classes are
    /// `classNames` in index order.
    public static func load(_ path: String, classNames: [String], layout: DatasetLayout? = nil,
                            split: RAFDBSplit = .test) throws(DatasetError) -> LabelledDataset {
        precondition(!classNames.isEmpty, "a dataset needs a model with classes")
        let detected: DatasetLayout
        if let layout { detected = layout } else { detected = try detectLayout(of: path) }
        switch detected {
        case .rafdb: return try loadRAFDB(path, classNames: classNames, split: split)
        case .folders: return try loadFolders(path, classNames: classNames)
        case .list: return try loadList(path, classNames: classNames)
        }
    }

    // MARK: RAF-DB

    private static func loadRAFDB(_ root: String, classNames: [String], split: RAFDBSplit) throws(DatasetError) -> LabelledDataset {
        let labelFile = join(root, rafdbLabelFile)
        let lines: [(Int, String)]
        do { lines = try readLines(labelFile) } catch let error where error.kind == .unreadable(reason: "No such file or directory") {
            throw DatasetError(file: labelFile, kind: .missingLabelFile)
        }
        // RAF-DB's numbers 1...7 are its own class order; each maps to the model class of that name.
        let rafdbNames = LabelSet.rafdb.names
        var toModel: [Int] = []
        for name in rafdbNames {
            guard let index = classNames.firstIndex(where: { canonical($0) == canonical(name) }) else {
                throw DatasetError(file: labelFile, kind: .notRAFDBClasses(missing: name, classes: classNames))
            }
            toModel.append(index)
        }
        let prefix = split.rawValue + "_"
        let folder = join(root, rafdbImageFolder)
        var images = ImageList(file: labelFile)
        var seen = Set<Int>()
        for (number, line) in lines {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else {
                throw DatasetError(file: labelFile, line: number, kind: .malformedLine(expected: "'NAME.jpg LABEL'", got: line))
            }
            let name = String(fields[0]), label = String(fields[1])
            guard let value = Int(label) else {
                throw DatasetError(file: labelFile, line: number, kind: .malformedLine(expected: "a label 1...7", got: line))
            }
            guard (1...rafdbNames.count).contains(value) else {
                throw DatasetError(file: labelFile, line: number, kind: .labelOutOfRange(label: label, range: 1...rafdbNames.count))
            }
            guard name.hasPrefix(prefix) else { continue }
            let stem = name.lastIndex(of: ".").map { String(name[..<$0]) } ?? name
            try images.add(LabelledImage(path: Array(join(folder, stem + "_aligned.jpg").utf8), label: toModel[value - 1],
                                         source: "\(labelFile):\(number)"), line: number, label: label)
            seen.insert(value)
        }
        guard !images.images.isEmpty else { throw DatasetError(file: labelFile, kind: .noImages(split: split.rawValue)) }
        let mapping = seen.sorted().map {
            ClassMapping(datasetLabel: "\($0) \(rafdbNames[$0 - 1])", modelClass: toModel[$0 - 1],
                         modelName: classNames[toModel[$0 - 1]], rule: "rafdb")
        }
        return LabelledDataset(root: root, layout: .rafdb, split: split, images: images.images, mapping: mapping,
                               duplicates: images.duplicates)
    }

    // MARK: Class folders

    private static func loadFolders(_ root: String, classNames: [String]) throws(DatasetError) -> LabelledDataset {
        let folders = try subdirectories(of: root)
        guard !folders.isEmpty else { throw DatasetError(file: root, kind: .noClassFolders) }
        var images: [LabelledImage] = []
        var mapping: [ClassMapping] = []
        for name in folders {
            let folderBytes = Array(root.utf8) + (root.hasSuffix("/") ? [] : [UInt8(ascii: "/")]) + name
            let folder = FileNames.display(folderBytes)
            let entry = try resolve(FileNames.display(name), classNames: classNames, file: folder, line: nil)
            if let other = mapping.first(where: { $0.modelClass == entry.modelClass }) {
                throw DatasetError(file: folder, kind: .duplicateClass(name: entry.datasetLabel, other: other.datasetLabel,
                                                                       modelClass: entry.modelName))
            }
            mapping.append(entry)
            let files: [[UInt8]]
            do { files = try ImageDecoder.imageFiles(inDirectory: folderBytes) } catch {
                if error.kind == .noImagesInDirectory { throw DatasetError(file: folder, kind: .emptyFolder) }
                throw DatasetError(file: folder, kind: .unreadable(reason: error.message))
            }
            images += files.map { LabelledImage(path: $0, label: entry.modelClass, source: folder) }
        }
        return LabelledDataset(root: root, layout: .folders, split: nil, images: images, mapping: mapping)
    }

    /// Names of the directories in `root` (not hidden, symbolic links followed), sorted by bytes.
    private static func subdirectories(of root: String) throws(DatasetError) -> [[UInt8]] {
        guard let dir = opendir(root) else {
            throw DatasetError(file: root, kind: .unreadable(reason: String(cString: strerror(errno))))
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            guard name.first != UInt8(ascii: ".") else { continue }
            let full = Array(root.utf8) + [UInt8(ascii: "/")] + name
            if ImageDecoder.isDirectory(full) { names.append(name) }
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    // MARK: Lists

    private static func loadList(_ file: String, classNames: [String]) throws(DatasetError) -> LabelledDataset {
        let allLines = try readLines(file)
        let base = file.lastIndex(of: "/").map { String(file[...$0]) } ?? ""
        // TSV when the name says so or the first line has a tab; CSV otherwise.
        let tab = file.lowercased().hasSuffix(".tsv") || (allLines.first?.1.contains("\t") ?? false)
        let expected = tab ? "'path<TAB>label'" : "'path,label'"
        var images = ImageList(file: file)
        var mapping: [ClassMapping] = []
        for (index, (number, line)) in allLines.enumerated() {
            guard let fields = splitFields(line, separator: tab ? "\t" : ","), fields.count == 2 else {
                throw DatasetError(file: file, line: number, kind: .malformedLine(expected: expected, got: line))
            }
            let path = fields[0].trimmingSpaces, label = fields[1].trimmingSpaces
            // An optional header line: `path,label` (any case).
            if index == 0, path.lowercased() == "path", label.lowercased() == "label" { continue }
            guard !path.isEmpty, !label.isEmpty else {
                throw DatasetError(file: file, line: number, kind: .malformedLine(expected: expected, got: line))
            }
            let entry: ClassMapping
            if let known = mapping.first(where: { $0.datasetLabel == label }) {
                entry = known
            } else {
                entry = try resolve(label, classNames: classNames, file: file, line: number)
                mapping.append(entry)
            }
            let full = path.hasPrefix("/") ? path : base + path
            try images.add(LabelledImage(path: Array(full.utf8), label: entry.modelClass, source: "\(file):\(number)"),
                           line: number, label: label)
        }
        guard !images.images.isEmpty else { throw DatasetError(file: file, kind: .noImages(split: nil)) }
        return LabelledDataset(root: file, layout: .list, split: nil, images: images.images, mapping: mapping,
                               duplicates: images.duplicates)
    }

    /// The fields of one CSV/TSV line; double quotes around a field allow the separator inside it
    /// (`""` is a quote). Nil when a quote is not closed.
    static func splitFields(_ line: String, separator: Character) -> [String]? {
        var fields: [String] = []
        var field = ""
        var quoted = false
        var iterator = line.makeIterator()
        var pending: Character? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    let next = iterator.next()
                    if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                } else {
                    field.append(c)
                }
            } else if c == "\"" && field.trimmingSpaces.isEmpty {
                field = ""
                quoted = true
            } else if c == separator {
                fields.append(field)
                field = ""
            } else {
                field.append(c)
            }
        }
        if quoted { return nil }
        fields.append(field)
        return fields
    }

    // MARK: Labels

    /// Common English variants of the expression names, taken as the same class.
    static let aliases: [String: String] = [
        "happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
        "fearful": "fear", "disgusted": "disgust",
    ]

    static func canonical(_ name: String) -> String {
        let lower = name.trimmingSpaces.lowercased()
        return aliases[lower] ?? lower
    }

    /// The model class `label` names: a number is an index (0-based), anything else a class name.
    static func resolve(_ label: String, classNames: [String], file: String, line: Int?) throws(DatasetError) -> ClassMapping {
        if !label.isEmpty, label.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let index = Int(label), classNames.indices.contains(index) else {
                throw DatasetError(file: file, line: line, kind: .labelOutOfRange(label: label, range: 0...classNames.count - 1))
            }
            return ClassMapping(datasetLabel: label, modelClass: index, modelName: classNames[index], rule: "index")
        }
        guard let index = classNames.firstIndex(where: { canonical($0) == canonical(label) }) else {
            throw DatasetError(file: file, line: line, kind: .unknownClass(name: label, classes: classNames))
        }
        return ClassMapping(datasetLabel: label, modelClass: index, modelName: classNames[index], rule: "name")
    }

    // MARK: Files

    static func join(_ a: String, _ b: String) -> String { a.hasSuffix("/") ? a + b : a + "/" + b }

    /// The non-empty, non-comment (`#`) lines of a label file (UTF-8, at most 256 MiB) with their
    /// 1-based numbers; LF or CRLF line ends, a leading byte-order mark dropped. A line over
    /// ``maxLineBytes``, holding a NUL byte (which would end the path at the system call) or not UTF-8 is
    /// refused, naming its number.
    static func readLines(_ path: String) throws(DatasetError) -> [(Int, String)] {
        let bytes: [UInt8]
        do { bytes = try ImageDecoder.readFile(pathBytes: Array(path.utf8), maxBytes: 1 << 28) } catch {
            if error.kind == .emptyFile { return [] }
            let reason = error.kind == .fileNotFound ? "No such file or directory" : error.message
            throw DatasetError(file: path, kind: .unreadable(reason: reason))
        }
        var out: [(Int, String)] = []
        var start = 0, number = 0
        while start < bytes.count {
            number += 1
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            guard end - start <= maxLineBytes else {
                throw DatasetError(file: path, line: number, kind: .lineTooLong(
                    limit: maxLineBytes, start: String(decoding: bytes[start..<start + DatasetError.quotedBytes], as: UTF8.self)))
            }
            var line = bytes[start..<end]
            start = end + 1
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if number == 1, line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
            if let nul = line.firstIndex(of: 0) {
                throw DatasetError(file: path, line: number, kind: .nulByte(column: nul - line.startIndex + 1))
            }
            guard let text = String(validating: line, as: UTF8.self) else {
                throw DatasetError(file: path, line: number, kind: .unreadable(reason: "not UTF-8 text"))
            }
            let trimmed = text.trimmingSpaces
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            out.append((number, text))
        }
        return out
    }
}

/// The images of a label file as its lines are read: an image listed again with the same class is
/// counted as a duplicate and kept once; with another class, it is an error naming both lines.
private struct ImageList {
    let file: String
    var images: [LabelledImage] = []
    var duplicates: [String] = []
    /// Per image path: its index in `images`, its line and its label as written.
    private var first: [[UInt8]: (index: Int, line: Int, label: String)] = [:]

    init(file: String) { self.file = file }

    mutating func add(_ image: LabelledImage, line: Int, label: String) throws(DatasetError) {
        if let earlier = first[image.path] {
            guard images[earlier.index].label == image.label else {
                throw DatasetError(file: file, line: line, kind: .conflictingLabels(
                    image: image.displayPath, label: label, otherLine: earlier.line, otherLabel: earlier.label))
            }
            duplicates.append("\(file):\(line)")
            return
        }
        first[image.path] = (images.count, line, label)
        images.append(image)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
