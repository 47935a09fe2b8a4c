import FERImage
import Foundation
import XCTest

/// `fer-infer eval` on Tests/Fixtures/eval: predictions equal PyTorch's and every metric equals
/// scikit-learn's (tools/reference/make_eval_fixtures.py), in every layout and with every flag.
final class EvalCommandTests: XCTestCase {
    private let fixtures = "Tests/Fixtures/eval"
    private let tolerance = 1e-12
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "fer-eval-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Expected values

    private struct Case {
        let name: String
        let args: [String]
        let images: [[String: Any]]
        let metrics: [String: Any]
    }

    private func cases() throws -> [Case] {
        let data = try Data(contentsOf: CLI.root.appendingPathComponent(fixtures + "/expected.json"))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(object["cases"] as? [[String: Any]]).map {
            Case(name: $0["name"] as! String, args: $0["args"] as! [String], images: $0["images"] as! [[String: Any]],
                 metrics: $0["metrics"] as! [String: Any])
        }
    }

    private func arguments(_ c: Case) -> [String] {
        [fixtures + "/" + c.args[0]] + c.args.dropFirst()
    }

    private func double(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? .nan }

    /// The report's metrics equal scikit-learn's and its predictions PyTorch's.
    private func assertMatches(_ json: [String: Any], _ c: Case, _ context: String) {
        let m = c.metrics
        XCTAssertEqual(json["evaluated"] as? Int, c.images.count, context)
        XCTAssertEqual(double(json["accuracy"]), double(m["accuracy"]), accuracy: tolerance, context)
        XCTAssertEqual(double(json["balanced_accuracy"]), double(m["balanced_accuracy"]), accuracy: tolerance, context)
        XCTAssertEqual(double(json["macro_f1"]), double(m["macro_f1"]), accuracy: tolerance, context)
        XCTAssertEqual(json["confusion_matrix"] as? [[Int]], m["confusion_matrix"] as? [[Int]], context)
        let normalized = (json["confusion_matrix_normalized"] as? [[NSNumber]]) ?? []
        let expectedNormalized = (m["confusion_matrix_normalized"] as? [[NSNumber]]) ?? []
        XCTAssertEqual(normalized.count, expectedNormalized.count, context)
        for (row, expectedRow) in zip(normalized, expectedNormalized) {
            for (a, b) in zip(row, expectedRow) { XCTAssertEqual(a.doubleValue, b.doubleValue, accuracy: tolerance, context) }
        }
        let perClass = (json["per_class"] as? [[String: Any]]) ?? []
        XCTAssertEqual(perClass.count, 7, context)
        for (k, scores) in perClass.enumerated() {
            XCTAssertEqual(double(scores["precision"]), double((m["precision"] as! [Any])[k]), accuracy: tolerance, context)
            XCTAssertEqual(double(scores["recall"]), double((m["recall"] as! [Any])[k]), accuracy: tolerance, context)
            XCTAssertEqual(double(scores["f1"]), double((m["f1"] as! [Any])[k]), accuracy: tolerance, context)
            XCTAssertEqual(scores["support"] as? Int, (m["support"] as! [Int])[k], context)
        }
        let predictions = (json["predictions"] as? [[String: Any]]) ?? []
        XCTAssertEqual(predictions.count, c.images.count, context)
        for (p, e) in zip(predictions, c.images) {
            XCTAssertEqual(p["path"] as? String, fixtures + "/" + (e["path"] as! String), context)
            XCTAssertEqual(p["label"] as? Int, e["label"] as? Int, "\(context) \(e["path"]!)")
            XCTAssertEqual(p["predicted"] as? Int, e["predicted"] as? Int, "\(context) \(e["path"]!): PyTorch predicts otherwise")
            let top = (e["probabilities"] as! [NSNumber]).map(\.doubleValue).max()!
            XCTAssertEqual(double(p["probability"]), top, accuracy: 1e-4, "\(context) \(e["path"]!)")
        }
    }

    // MARK: Layouts

    func testEveryLayoutMatchesPyTorchAndScikitLearn() throws {
        for c in try cases() {
            let result = try CLI.run(["eval", "--json"] + arguments(c))
            XCTAssertEqual(result.status, 0, "\(c.name): \(result.stderr)")
            XCTAssertEqual(result.stderr, "", c.name)
            assertMatches(result.json, c, c.name)
        }
    }

    func testFlagCombinationsGiveTheSameReport() throws {
        let all = try cases()
        let folders = try XCTUnwrap(all.first { $0.name == "folders" })
        let rafdb = try XCTUnwrap(all.first { $0.name == "rafdb-test" })
        for flags in [["--batch", "1"], ["--batch", "5", "--threads", "2"], ["--no-overlap", "--batch", "7"],
                      ["--decode-threads", "3", "--batch", "4"], ["--decode-threads", "2", "--no-overlap"],
                      ["--labels", "rafdb", "--layout", "folders"]] {
            let result = try CLI.run(["eval", "--json"] + flags + arguments(folders))
            XCTAssertEqual(result.status, 0, "\(flags): \(result.stderr)")
            assertMatches(result.json, folders, "folders \(flags)")
            XCTAssertEqual(result.json["resized"] as? Int, 8, "folders holds 8 images that are not 112x112")
        }
        let explicit = try CLI.run(["eval", "--json", "--layout", "rafdb", "--split", "test", "--batch", "3"] + arguments(rafdb))
        assertMatches(explicit.json, rafdb, "rafdb explicit")
        XCTAssertEqual(explicit.json["resized"] as? Int, 0)
    }

    func testFolderNamesAsIndicesGiveTheSameReport() throws {
        // The folders fixture with every class folder renamed to its index (AffectNet exports).
        let folders = try XCTUnwrap(try cases().first { $0.name == "folders" })
        let names = ["Surprise": 0, "fear": 1, "Disgust": 2, "happy": 3, "Sadness": 4, "Anger": 5, "Neutral": 6]
        let source = CLI.root.appendingPathComponent(fixtures + "/folders").path
        for (name, index) in names {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: directory + "/\(index)")
        }
        let result = try CLI.run(["eval", "--json", directory])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = result.json
        XCTAssertEqual(json["confusion_matrix"] as? [[Int]], folders.metrics["confusion_matrix"] as? [[Int]])
        XCTAssertEqual(double(json["macro_f1"]), double(folders.metrics["macro_f1"]), accuracy: tolerance)
        let rules = ((json["class_mapping"] as? [[String: Any]]) ?? []).compactMap { $0["rule"] as? String }
        XCTAssertEqual(rules, Array(repeating: "index", count: 7))
    }

    // MARK: Text output

    func testTextReportShowsMappingMetricsAndMatrix() throws {
        let c = try XCTUnwrap(try cases().first { $0.name == "folders" })
        let result = try CLI.run(["eval"] + arguments(c))
        XCTAssertEqual(result.status, 0, result.stderr)
        let out = result.stdout
        XCTAssertTrue(out.contains(String(format: "Accuracy           %6.2f%%  (21/25)", double(c.metrics["accuracy"]) * 100)), out)
        XCTAssertTrue(out.contains(String(format: "Balanced accuracy  %6.2f%%", double(c.metrics["balanced_accuracy"]) * 100)), out)
        XCTAssertTrue(out.contains(String(format: "Macro F1           %6.2f%%", double(c.metrics["macro_f1"]) * 100)), out)
        XCTAssertTrue(out.contains("happy -> 3 Happiness"), "the mapping is printed: \(out)")
        XCTAssertTrue(out.contains("fear -> 1 Fear"), out)
        XCTAssertTrue(out.contains("17 used as they are (112x112), 8 resized to 112x112 with PIL's bilinear filter as the authors' evaluation does"), out)
        XCTAssertTrue(out.contains("images/s"), out)
        XCTAssertTrue(out.contains("Confusion matrix (rows: true class, columns: predicted class), counts"), out)
        XCTAssertTrue(out.contains("Row-normalised"), out)
        XCTAssertFalse(result.stderr.contains("\r"), "no progress bar when stderr is not a terminal")
    }

    func testProgressBarOnlyOnATerminalAndNotWithJSON() throws {
        let script = "/usr/bin/script"
        guard FileManager.default.isExecutableFile(atPath: script) else { throw XCTSkip("util-linux script(1) is not installed") }
        func underTerminal(_ args: [String]) throws -> String {
            let command = ([CLI.binary.path, "eval"] + args).map { "'\($0)'" }.joined(separator: " ")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: script)
            process.arguments = ["-qefc", command, "/dev/null"]
            process.currentDirectoryURL = CLI.root
            let out = Pipe()
            process.standardOutput = out
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
            return String(decoding: data, as: UTF8.self)
        }
        let text = try underTerminal(["--batch", "4", fixtures + "/rafdb"])
        XCTAssertTrue(text.contains("\r[##"), "no progress bar on a terminal: \(text.debugDescription)")
        XCTAssertTrue(text.contains("32/32"), text.debugDescription)
        XCTAssertTrue(text.contains("images/s") && text.contains(" left"), text.debugDescription)
        let json = try underTerminal(["--json", fixtures + "/rafdb"])
        XCTAssertFalse(json.contains("\r["), "a progress bar with --json")
    }

    // MARK: --errors and --plot

    func testErrorsFileListsTheMisclassifiedImagesWithPyTorchsProbabilities() throws {
        let c = try XCTUnwrap(try cases().first { $0.name == "rafdb-test" })
        let path = directory + "/wrong.tsv"
        let result = try CLI.run(["eval", "--errors", path] + arguments(c))
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let classes = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
        XCTAssertEqual(lines.first, (["path", "true_label", "predicted_label", "p_true", "p_predicted"] + classes.map { "p_" + $0 })
            .joined(separator: "\t"))
        let wrong = c.images.filter { ($0["label"] as! Int) != ($0["predicted"] as! Int) }
        XCTAssertEqual(lines.count - 1, wrong.count)
        XCTAssertGreaterThan(wrong.count, 0)
        for (line, expected) in zip(lines.dropFirst(), wrong) {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let probabilities = (expected["probabilities"] as! [NSNumber]).map(\.doubleValue)
            let truth = expected["label"] as! Int, predicted = expected["predicted"] as! Int
            XCTAssertEqual(f.count, 5 + classes.count)
            XCTAssertEqual(f[0], fixtures + "/" + (expected["path"] as! String))
            XCTAssertEqual(f[1], classes[truth])
            XCTAssertEqual(f[2], classes[predicted])
            XCTAssertEqual(Double(f[3])!, probabilities[truth], accuracy: 1e-4)
            XCTAssertEqual(Double(f[4])!, probabilities[predicted], accuracy: 1e-4)
            for k in 0..<classes.count { XCTAssertEqual(Double(f[5 + k])!, probabilities[k], accuracy: 1e-4, line) }
        }
    }

    func testPlotPNGShowsAMostlyDiagonalMatrix() throws {
        let c = try XCTUnwrap(try cases().first { $0.name == "rafdb-test" })
        let path = directory + "/confusion.png"
        let result = try CLI.run(["eval", "--plot", path] + arguments(c))
        XCTAssertEqual(result.status, 0, result.stderr)
        let image = try ImageDecoder.decode(path: path).image
        // ConfusionPlot's geometry: grid at (136, 56), 72-pixel cells, 96 right and 64 below it.
        let left = 136, top = 56, cell = 72
        XCTAssertEqual(image.width, left + 7 * cell + 96)
        XCTAssertEqual(image.height, top + 7 * cell + 64)
        let nonWhite = stride(from: 0, to: image.pixels.count, by: 3).filter { image.pixels[$0] < 250 }.count
        XCTAssertGreaterThan(nonWhite, image.width * image.height / 10, "the picture is nearly empty")
        // A cell's shade, read near its top-left corner (the percentage is in its middle).
        func luminance(_ t: Int, _ p: Int) -> Int {
            let (r, g, b) = image[left + p * cell + 6, top + t * cell + 6]
            return Int(r) + Int(g) + Int(b)
        }
        let normalized = c.metrics["confusion_matrix_normalized"] as! [[NSNumber]]
        for t in 0..<7 {
            for p in 0..<7 where p != t {
                XCTAssertLessThan(luminance(t, t), luminance(t, p), "diagonal cell \(t) is not darker than (\(t), \(p))")
            }
            // Cells with the same share have the same shade; a larger share is darker.
            for p in 0..<7 where normalized[t][p].doubleValue == 0 {
                XCTAssertGreaterThan(luminance(t, p), 3 * 240, "an empty cell is not near white")
            }
        }
        XCTAssertLessThan(luminance(1, 1), luminance(0, 0), "100% is darker than 80%")
    }

    func testPlotSVG() throws {
        let path = directory + "/confusion.svg"
        let result = try CLI.run(["eval", "--plot", path, fixtures + "/list.tsv"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("<?xml"), String(text.prefix(80)))
        XCTAssertTrue(text.contains("<svg") && text.contains("width=\"736pt\"") && text.contains("height=\"624pt\""), String(text.prefix(400)))
        XCTAssertTrue(text.hasSuffix("</svg>\n"), "the SVG file is not finished")
    }

    func testUnwritableOutputsAreUsageErrorsNamingThePath() throws {
        for flag in ["--plot", "--errors"] {
            let path = directory + "/missing/out." + (flag == "--plot" ? "png" : "tsv")
            let result = try CLI.run(["eval", flag, path, fixtures + "/list.csv"])
            XCTAssertEqual(result.status, 2, "checked before the run: \(flag)")
            XCTAssertTrue(result.stderr.contains(path), result.stderr)
        }
        let bad = try CLI.run(["eval", "--plot", directory + "/x.jpg", fixtures + "/list.csv"])
        XCTAssertEqual(bad.status, 2, "a plot that is neither .png nor .svg is a usage error")
    }

    // MARK: --detect

    func testDetectClassifiesTheLargestFaceOfImagesThatAreNotCrops() throws {
        let photo = CLI.root.appendingPathComponent(".downloads/photos/astronaut.png").path
        let cat = CLI.root.appendingPathComponent(".downloads/photos/chelsea.png").path
        guard FileManager.default.fileExists(atPath: photo), FileManager.default.fileExists(atPath: cat) else {
            throw XCTSkip("run tools/setup: .downloads/photos/astronaut.png and chelsea.png are missing")
        }
        let crop = CLI.root.appendingPathComponent(fixtures + "/rafdb/Image/aligned/test_0001_aligned.jpg").path
        try "\(photo),Happiness\n\(crop),Fear\n\(cat),Anger\n".write(toFile: directory + "/l.csv", atomically: true, encoding: .utf8)

        // The photo pipeline's result for the astronaut's largest (only) face, and the crop as it is.
        let reference = try CLI.run(["--json", "--detect", photo])
        let faces = try XCTUnwrap(((reference.json["results"] as? [[String: Any]])?.first?["faces"]) as? [[String: Any]])
        let largest = try XCTUnwrap(faces.max { area($0["box"]) < area($1["box"]) })
        let cropReference = try CLI.run(["--json", crop])
        let cropResult = try XCTUnwrap((cropReference.json["results"] as? [[String: Any]])?.first)

        let result = try CLI.run(["eval", "--json", "--detect", directory + "/l.csv"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = result.json
        XCTAssertEqual(json["detected"] as? Int, 1)
        XCTAssertEqual(json["resized"] as? Int, 0)
        let predictions = (json["predictions"] as? [[String: Any]]) ?? []
        XCTAssertEqual(predictions.count, 2)
        XCTAssertEqual(predictions.first?["predicted"] as? Int, largest["index"] as? Int)
        XCTAssertEqual(double(predictions.first?["probability"]), double(largest["probability"]), accuracy: 1e-6)
        XCTAssertEqual(predictions.last?["predicted"] as? Int, cropResult["index"] as? Int, "a 112x112 crop is used as it is")
        XCTAssertEqual(double(predictions.last?["probability"]), double(cropResult["probability"]), accuracy: 1e-6)
        // The cat has no face: listed and counted, or fatal with --strict.
        let unreadable = (json["unreadable"] as? [[String: Any]]) ?? []
        XCTAssertEqual(unreadable.compactMap { $0["path"] as? String }, [cat])
        XCTAssertEqual(result.stderr, "fer-infer: \(cat): no face found (--detect)\n")
        let text = try CLI.run(["eval", "--detect", directory + "/l.csv"])
        XCTAssertTrue(text.stdout.contains("1 used as they are (112x112), 1 replaced by their largest face"), text.stdout)
        let strict = try CLI.run(["eval", "--detect", "--strict", directory + "/l.csv"])
        XCTAssertEqual(strict.status, 1)
        XCTAssertEqual(strict.stderr, "fer-infer: \(cat): no face found (--detect) (--strict)\n")

        // Without --detect the photo is resized whole, as the authors' evaluation does.
        let resized = try CLI.run(["eval", "--json", directory + "/l.csv"])
        XCTAssertEqual(resized.json["resized"] as? Int, 2)
        XCTAssertEqual(resized.json["detected"] as? Int, 0)
        let whole = try CLI.run(["--json", "--no-detect", photo])
        let wholeResult = try XCTUnwrap((whole.json["results"] as? [[String: Any]])?.first)
        let first = ((resized.json["predictions"] as? [[String: Any]]) ?? []).first
        XCTAssertEqual(first?["predicted"] as? Int, wholeResult["index"] as? Int)
        XCTAssertEqual(double(first?["probability"]), double(wholeResult["probability"]), accuracy: 1e-6)
    }

    private func area(_ box: Any?) -> Double {
        guard let b = (box as? [NSNumber])?.map(\.doubleValue), b.count == 4 else { return -1 }
        return (b[2] - b[0]) * (b[3] - b[1])
    }

    func testModelsWithoutClassesAndBadFlagsAreRefused() throws {
        for model in ["Tests/Fixtures/models/lfn/model.pth", "weights/retinaface-mobilenet0.25.pth"] {
            let result = try CLI.run(["eval", "--model", model, fixtures + "/list.csv"])
            XCTAssertEqual(result.status, 1, model)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.hasPrefix("fer-infer: \(model): ") && result.stderr.contains("eval needs a classifier"),
                          result.stderr)
        }
        for flags in [["--layout", "imagenet"], ["--split", "val"], ["--batch", "0"], ["--detector", "x.pth"],
                      ["--detect-threshold", "1"]] {
            let result = try CLI.run(["eval"] + flags + [fixtures + "/list.csv"])
            XCTAssertEqual(result.status, 2, "\(flags): \(result.stderr)")
        }
    }

    // MARK: Unreadable images

    func testUnreadableImagesAreListedAndCountedOrFatalWithStrict() throws {
        let good = CLI.root.appendingPathComponent(fixtures + "/folders/happy/img01.png").path
        let other = CLI.root.appendingPathComponent(fixtures + "/folders/happy/img02.png").path  // not a duplicate line
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: directory + "/broken.png"))
        try "\(good),Happiness\nmissing.jpg,Fear\nbroken.png,1\n\(other),3\n".write(
            toFile: directory + "/l.csv", atomically: true, encoding: .utf8)
        let result = try CLI.run(["eval", "--json", directory + "/l.csv"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let unreadable = (result.json["unreadable"] as? [[String: Any]]) ?? []
        XCTAssertEqual(unreadable.compactMap { $0["path"] as? String }, [directory + "/missing.jpg", directory + "/broken.png"])
        XCTAssertEqual(result.json["evaluated"] as? Int, 2)
        let errLines = result.stderr.split(separator: "\n")
        XCTAssertEqual(errLines.count, 2, result.stderr)
        XCTAssertTrue(errLines[0].hasPrefix("fer-infer: \(directory)/missing.jpg: "), result.stderr)
        XCTAssertTrue(errLines[1].hasPrefix("fer-infer: \(directory)/broken.png: "), result.stderr)
        let text = try CLI.run(["eval", directory + "/l.csv"])
        XCTAssertTrue(text.stdout.contains("Unreadable:  2"), text.stdout)

        let strict = try CLI.run(["eval", "--strict", "--json", directory + "/l.csv"])
        XCTAssertEqual(strict.status, 1)
        XCTAssertEqual(strict.stdout, "", "no report after a fatal unreadable image")
        XCTAssertEqual(strict.stderr.split(separator: "\n").count, 1, strict.stderr)
        XCTAssertTrue(strict.stderr.hasPrefix("fer-infer: \(directory)/missing.jpg: "), strict.stderr)
    }

    // MARK: Bad layouts

    /// `fer-infer eval` exits 1 with one line `fer-infer: <location>: ...`.
    private func assertBadLayout(_ dataset: String, _ location: String, _ words: String,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try CLI.run(["eval", dataset])
        XCTAssertEqual(result.status, 1, result.stderr, file: file, line: line)
        XCTAssertEqual(result.stdout, "", file: file, line: line)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("fer-infer: \(location): "), result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(words), result.stderr, file: file, line: line)
    }

    func testBadLayoutsExitWithOneLineNamingFileAndLine() throws {
        let fm = FileManager.default
        // Missing label file.
        try fm.createDirectory(atPath: directory + "/raf/Image/aligned", withIntermediateDirectories: true)
        let labels = directory + "/raf/EmoLabel/list_patition_label.txt"
        try assertBadLayout(directory + "/raf", labels, "missing")
        // Label out of range.
        try fm.createDirectory(atPath: directory + "/raf/EmoLabel", withIntermediateDirectories: true)
        try "test_0001.jpg 3\ntest_0002.jpg 0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        try assertBadLayout(directory + "/raf", labels + ":2", "label 0 is out of range 1...7")
        // Unknown class name, in a folder tree and in a list.
        try fm.createDirectory(atPath: directory + "/set/smirk", withIntermediateDirectories: true)
        try Data([1]).write(to: URL(fileURLWithPath: directory + "/set/smirk/a.png"))
        try assertBadLayout(directory + "/set", directory + "/set/smirk", "'smirk' is not a class of the model")
        try "path,label\na.png,Fear\nb.png,smirk\n".write(toFile: directory + "/l.csv", atomically: true, encoding: .utf8)
        try assertBadLayout(directory + "/l.csv", directory + "/l.csv:3", "'smirk' is not a class of the model")
        // Empty folder.
        try fm.createDirectory(atPath: directory + "/set2/Fear", withIntermediateDirectories: true)
        try assertBadLayout(directory + "/set2", directory + "/set2/Fear", "holds no images")
        // Index out of range in a list.
        try "a.png\t12\n".write(toFile: directory + "/l.tsv", atomically: true, encoding: .utf8)
        try assertBadLayout(directory + "/l.tsv", directory + "/l.tsv:1", "label 12 is out of range 0...6")
        // A dataset that is not there.
        try assertBadLayout(directory + "/nothing", directory + "/nothing", "No such file or directory")
    }
}
