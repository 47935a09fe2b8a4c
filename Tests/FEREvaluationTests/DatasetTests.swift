import FEREvaluation
import Foundation
import XCTest

final class DatasetTests: XCTestCase {
    private let rafdb = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "fer-eval-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func write(_ text: String, to relative: String) throws {
        let path = directory + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Loading `path` fails with exactly `expected`, whose description is one line.
    private func assertFails(_ path: String, classes: [String]? = nil, layout: DatasetLayout? = nil,
                             _ expected: DatasetError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try LabelledDataset.load(path, classNames: classes ?? rafdb, layout: layout), file: file, line: line) {
            XCTAssertEqual($0 as? DatasetError, expected, file: file, line: line)
            XCTAssertFalse("\($0)".contains("\n"), "not one line: \($0)", file: file, line: line)
        }
    }

    // MARK: The fixture layouts

    func testEveryFixtureLayoutReadsTheImagesAndLabelsTheReferenceUsed() throws {
        let (classes, cases) = try EvalFixtures.cases()
        for c in cases {
            let split = c.args.firstIndex(of: "--split").map { RAFDBSplit(rawValue: c.args[$0 + 1])! } ?? .test
            let data = try LabelledDataset.load(EvalFixtures.root + "/" + c.args[0], classNames: classes, split: split)
            XCTAssertEqual(data.images.map(\.displayPath), c.images.map { EvalFixtures.root + "/" + $0.path }, c.name)
            XCTAssertEqual(data.images.map(\.label), c.images.map(\.label), c.name)
        }
    }

    func testLayoutsAreDetected() throws {
        let root = EvalFixtures.root
        XCTAssertEqual(try LabelledDataset.detectLayout(of: root + "/rafdb"), .rafdb)
        XCTAssertEqual(try LabelledDataset.detectLayout(of: root + "/folders"), .folders)
        XCTAssertEqual(try LabelledDataset.detectLayout(of: root + "/list.csv"), .list)
        XCTAssertThrowsError(try LabelledDataset.detectLayout(of: root + "/nothing")) {
            XCTAssertEqual($0 as? DatasetError, DatasetError(file: root + "/nothing", kind: .unreadable(reason: "No such file or directory")))
        }
    }

    func testRAFDBSplitsAndMapping() throws {
        let root = EvalFixtures.root + "/rafdb"
        let test = try LabelledDataset.load(root, classNames: rafdb, split: .test)
        let train = try LabelledDataset.load(root, classNames: rafdb, split: .train)
        XCTAssertTrue(test.images.allSatisfy { $0.displayPath.contains("/Image/aligned/test_") && $0.displayPath.hasSuffix("_aligned.jpg") })
        XCTAssertTrue(train.images.allSatisfy { $0.displayPath.contains("/Image/aligned/train_") })
        XCTAssertEqual(test.mapping.first, ClassMapping(datasetLabel: "1 Surprise", modelClass: 0, modelName: "Surprise", rule: "rafdb"))
        // A model in AffectNet-7 order: RAF-DB's numbers map through the names.
        let affectnet7 = ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"]
        let remapped = try LabelledDataset.load(root, classNames: affectnet7, split: .test)
        for (a, b) in zip(test.images, remapped.images) {
            XCTAssertEqual(affectnet7[b.label], rafdb[a.label])
        }
    }

    func testFolderNamesAsIndicesAndAliases() throws {
        for (name, file) in [("0", "a.png"), ("happy", "b.jpg"), ("SAD", "c.png")] {
            try write("x", to: "set/\(name)/\(file)")
        }
        let data = try LabelledDataset.load(directory + "/set", classNames: rafdb)
        XCTAssertEqual(data.layout, .folders)
        XCTAssertEqual(data.mapping, [
            ClassMapping(datasetLabel: "0", modelClass: 0, modelName: "Surprise", rule: "index"),
            ClassMapping(datasetLabel: "SAD", modelClass: 4, modelName: "Sadness", rule: "name"),
            ClassMapping(datasetLabel: "happy", modelClass: 3, modelName: "Happiness", rule: "name"),
        ])
        XCTAssertEqual(data.images.map(\.label), [0, 4, 3])
    }

    func testListsWithQuotesHeaderCRLFAndComments() throws {
        try write("\u{FEFF}path,label\r\n# a comment\r\n\"a, b.png\",3\r\n/abs/c.jpg , Fear \r\n\r\nd.png,\"sad\"\r\n", to: "l.csv")
        let data = try LabelledDataset.load(directory + "/l.csv", classNames: rafdb)
        XCTAssertEqual(data.images.map(\.displayPath), [directory + "/a, b.png", "/abs/c.jpg", directory + "/d.png"])
        XCTAssertEqual(data.images.map(\.label), [3, 1, 4])
        XCTAssertEqual(data.images.map(\.source), [directory + "/l.csv:3", directory + "/l.csv:4", directory + "/l.csv:6"])
        try write("x.png\t6\ny y.png\tNeutral\n", to: "l.tsv")
        let tsv = try LabelledDataset.load(directory + "/l.tsv", classNames: rafdb)
        XCTAssertEqual(tsv.images.map(\.label), [6, 6])
        XCTAssertEqual(tsv.images.map(\.displayPath), [directory + "/x.png", directory + "/y y.png"])
    }

    // MARK: Bad layouts: one line naming the file (and line)

    func testMissingRAFDBLabelFile() throws {
        try FileManager.default.createDirectory(atPath: directory + "/raf/Image/aligned", withIntermediateDirectories: true)
        assertFails(directory + "/raf", DatasetError(file: directory + "/raf/EmoLabel/list_patition_label.txt", kind: .missingLabelFile))
    }

    func testRAFDBLabelOutOfRangeAndMalformedLines() throws {
        let file = directory + "/raf/EmoLabel/list_patition_label.txt"
        try write("test_0001.jpg 5\ntest_0002.jpg 8\n", to: "raf/EmoLabel/list_patition_label.txt")
        assertFails(directory + "/raf", DatasetError(file: file, line: 2, kind: .labelOutOfRange(label: "8", range: 1...7)))
        try write("test_0001.jpg 5\n\ntest_0002.jpg\n", to: "raf/EmoLabel/list_patition_label.txt")
        assertFails(directory + "/raf", DatasetError(file: file, line: 3, kind: .malformedLine(expected: "'NAME.jpg LABEL'", got: "test_0002.jpg")))
        try write("test_0001.jpg five\n", to: "raf/EmoLabel/list_patition_label.txt")
        assertFails(directory + "/raf", DatasetError(file: file, line: 1, kind: .malformedLine(expected: "a label 1...7", got: "test_0001.jpg five")))
        try write("train_0001.jpg 1\n", to: "raf/EmoLabel/list_patition_label.txt")
        assertFails(directory + "/raf", DatasetError(file: file, kind: .noImages(split: "test")))
        XCTAssertEqual("\(DatasetError(file: file, line: 2, kind: .labelOutOfRange(label: "8", range: 1...7)))",
                       "\(file):2: label 8 is out of range 1...7")
    }

    func testRAFDBNeedsTheModelToHaveRAFDBsClasses() throws {
        try write("test_0001.jpg 1\n", to: "raf/EmoLabel/list_patition_label.txt")
        let classes = ["class 0", "class 1"]
        assertFails(directory + "/raf", classes: classes,
                    DatasetError(file: directory + "/raf/EmoLabel/list_patition_label.txt",
                                 kind: .notRAFDBClasses(missing: "Surprise", classes: classes)))
    }

    func testUnknownClassFolderEmptyFolderAndDuplicates() throws {
        try write("x", to: "set/Happiness/a.png")
        try write("x", to: "set/smirk/b.png")
        assertFails(directory + "/set", DatasetError(file: directory + "/set/smirk", kind: .unknownClass(name: "smirk", classes: rafdb)))
        try FileManager.default.removeItem(atPath: directory + "/set/smirk")
        try write("not an image", to: "set/Fear/notes.txt")
        assertFails(directory + "/set", DatasetError(file: directory + "/set/Fear", kind: .emptyFolder))
        try FileManager.default.removeItem(atPath: directory + "/set/Fear")
        try write("x", to: "set/happy/c.png")
        assertFails(directory + "/set", DatasetError(file: directory + "/set/happy",
                                                     kind: .duplicateClass(name: "happy", other: "Happiness", modelClass: "Happiness")))
        try FileManager.default.removeItem(atPath: directory + "/set/happy")
        try write("x", to: "set/9/c.png")
        assertFails(directory + "/set", DatasetError(file: directory + "/set/9", kind: .labelOutOfRange(label: "9", range: 0...6)))
        try FileManager.default.createDirectory(atPath: directory + "/flat", withIntermediateDirectories: true)
        try write("x", to: "flat/a.png")
        assertFails(directory + "/flat", DatasetError(file: directory + "/flat", kind: .noClassFolders))
    }

    func testBadListLines() throws {
        let file = directory + "/l.csv"
        try write("path,label\na.png,Happiness\nb.png,smirk\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 3, kind: .unknownClass(name: "smirk", classes: rafdb)))
        try write("a.png,7\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 1, kind: .labelOutOfRange(label: "7", range: 0...6)))
        try write("a.png,1\nb.png\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 2, kind: .malformedLine(expected: "'path,label'", got: "b.png")))
        try write("a.png,1,extra\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 1, kind: .malformedLine(expected: "'path,label'", got: "a.png,1,extra")))
        try write("\"a.png,1\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 1, kind: .malformedLine(expected: "'path,label'", got: "\"a.png,1")))
        try write(",1\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 1, kind: .malformedLine(expected: "'path,label'", got: ",1")))
        try write("path,label\n# nothing\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, kind: .noImages(split: nil)))
        try Data([0x61, 0x2C, 0x31, 0x0A, 0x61, 0xFF, 0x2C, 0x31]).write(to: URL(fileURLWithPath: file))
        assertFails(file, DatasetError(file: file, line: 2, kind: .unreadable(reason: "not UTF-8 text")))
    }

    // MARK: Hostile label files

    /// A NUL inside a listed path would make the system read another file (`img/face.png`): the line is
    /// refused, in lists and in RAF-DB's label file alike.
    func testANULByteRefusesTheLine() throws {
        let file = directory + "/l.csv"
        try Data("a.png,Happiness\nimg/face.png\u{0}junk,Happiness\n".utf8).write(to: URL(fileURLWithPath: file))
        assertFails(file, DatasetError(file: file, line: 2, kind: .nulByte(column: 13)))
        XCTAssertEqual("\(DatasetError(file: file, line: 2, kind: .nulByte(column: 13)))",
                       "\(file):2: NUL byte at column 13; a path cannot contain one")
        let labels = directory + "/raf/EmoLabel/list_patition_label.txt"
        try write("test_0001.jpg 5\n", to: "raf/EmoLabel/list_patition_label.txt")
        try Data("test_0001.jpg\u{0} 5\n".utf8).write(to: URL(fileURLWithPath: labels))
        assertFails(directory + "/raf", DatasetError(file: labels, line: 1, kind: .nulByte(column: 14)))
    }

    /// A line of exactly the limit is read; one byte more is refused at once, quoting 200 bytes of it.
    func testLineLengthLimitOnBothSides() throws {
        let file = directory + "/l.csv"
        let limit = LabelledDataset.maxLineBytes
        let suffix = ",Happiness"
        let atLimit = String(repeating: "p", count: limit - suffix.utf8.count) + suffix
        try write("a.png,Happiness\n" + atLimit + "\n", to: "l.csv")
        XCTAssertEqual(try LabelledDataset.load(file, classNames: rafdb).images.count, 2)
        let over = "x" + atLimit
        try write("a.png,Happiness\n" + over + "\n", to: "l.csv")
        let start = String(over.prefix(200))
        assertFails(file, DatasetError(file: file, line: 2, kind: .lineTooLong(limit: limit, start: start)))
        let message = "\(DatasetError(file: file, line: 2, kind: .lineTooLong(limit: limit, start: start)))"
        XCTAssertEqual(message, "\(file):2: line is over the 65536-byte limit (it begins '\(start)')")
        // A malformed line is quoted up to 200 bytes too, control characters escaped.
        let long = String(repeating: "z", count: 300)
        XCTAssertEqual(DatasetError(file: "f", kind: .malformedLine(expected: "e", got: long + "\u{1B}")).message,
                       "expected e, got '\(String(repeating: "z", count: 200))…'")
        XCTAssertEqual(DatasetError(file: "f", kind: .malformedLine(expected: "e", got: "a\u{1B}b")).message, "expected e, got 'a\\x1bb'")
    }

    /// The same image twice with the same class is one image and a counted duplicate; with another
    /// class it is an error naming both lines.
    func testDuplicateAndConflictingEntries() throws {
        let labels = directory + "/raf/EmoLabel/list_patition_label.txt"
        try write("test_0001.jpg 4\ntest_0002.jpg 5\ntest_0001.jpg 4\ntest_0001.jpg 4\n", to: "raf/EmoLabel/list_patition_label.txt")
        let raf = try LabelledDataset.load(directory + "/raf", classNames: rafdb)
        XCTAssertEqual(raf.images.map(\.source), ["\(labels):1", "\(labels):2"])
        XCTAssertEqual(raf.duplicates, ["\(labels):3", "\(labels):4"])
        try write("test_0001.jpg 4\ntest_0002.jpg 5\ntest_0001.jpg 6\n", to: "raf/EmoLabel/list_patition_label.txt")
        assertFails(directory + "/raf", DatasetError(file: labels, line: 3, kind: .conflictingLabels(
            image: directory + "/raf/Image/aligned/test_0001_aligned.jpg", label: "6", otherLine: 1, otherLabel: "4")))

        let file = directory + "/l.csv"
        try write("path,label\na.png,happy\nb.png,Sadness\na.png,Happiness\n", to: "l.csv")
        let list = try LabelledDataset.load(file, classNames: rafdb)
        XCTAssertEqual(list.images.count, 2)
        XCTAssertEqual(list.duplicates, ["\(file):4"], "happy and Happiness are the same class")
        try write("a.png,happy\nb.png,Sadness\na.png,Fear\n", to: "l.csv")
        assertFails(file, DatasetError(file: file, line: 3, kind: .conflictingLabels(
            image: directory + "/a.png", label: "Fear", otherLine: 1, otherLabel: "happy")))
        XCTAssertEqual(DatasetError(file: file, line: 3, kind: .conflictingLabels(image: "a.png", label: "Fear", otherLine: 1,
                                                                                  otherLabel: "happy")).message,
                       "a.png is labelled Fear here but happy on line 1")
    }
}
