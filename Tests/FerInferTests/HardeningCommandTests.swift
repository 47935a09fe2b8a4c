import FERImage
import Foundation
import TestImages
import XCTest

/// Issue 25 on the command line: eval's output paths checked before the run and the report kept when a
/// write fails after it, hostile label files, the detector size bound, 16-bit grey photos read as OpenCV
/// reads them, and a huge image under a memory limit refused instead of aborting.
final class HardeningCommandTests: XCTestCase {
    private let fixtures = "Tests/Fixtures/eval"
    private let group = ".downloads/photos/t1.jpg"
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "fer-hardening-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func requireGroupPhoto() throws {
        if !FileManager.default.fileExists(atPath: CLI.root.appendingPathComponent(group).path) {
            throw XCTSkip("\(group) is missing: run tools/setup")
        }
    }

    /// `fer-infer arguments` started by bash after `setup` (ulimit and trap lines).
    private func runUnder(_ setup: String, _ arguments: [String]) throws -> CLI.Result {
        try CLI.run(via: "/bin/bash", ["-c", setup + #"; exec "$0" "$@""#, CLI.binary.path] + arguments)
    }

    // MARK: eval outputs

    func testUnwritableOutputPathsAreUsageErrorsBeforeTheRun() throws {
        let file = directory + "/file.txt"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let cases: [(String, String, String)] = [
            ("--plot", directory + "/missing/out.png", "folder \(directory)/missing does not exist"),
            ("--errors", directory + "/missing/out.tsv", "folder \(directory)/missing does not exist"),
            ("--errors", directory, "is a directory"),
            ("--plot", file + "/out.png", "\(file) is not a folder"),
        ]
        for (flag, path, reason) in cases {
            let result = try CLI.run(["eval", flag, path, fixtures + "/list.csv"])
            XCTAssertEqual(result.status, 2, "\(flag) \(path): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("\(flag) \(path): \(reason)"), result.stderr)
            XCTAssertEqual(result.stdout, "", "nothing was evaluated")
        }
        let same = try CLI.run(["eval", "--plot", directory + "/a.png", "--errors", directory + "/a.png", fixtures + "/list.csv"])
        XCTAssertEqual(same.status, 2, same.stderr)
        // Paths that can be written pass, the folder given or not.
        let fine = try CLI.run(["eval", "--plot", directory + "/c.png", "--errors", directory + "/w.tsv", fixtures + "/list.csv"])
        XCTAssertEqual(fine.status, 0, fine.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/c.png") && FileManager.default.fileExists(atPath: directory + "/w.tsv"))
    }

    /// A write that fails after the run (here every file write: `ulimit -f 0`, SIGXFSZ ignored) costs that
    /// file only: the report is printed, each file named on stderr, exit status 1.
    func testAWriteThatFailsAfterTheRunKeepsTheReport() throws {
        let result = try runUnder("trap '' XFSZ; ulimit -f 0",
                                  ["eval", "--plot", directory + "/c.png", "--errors", directory + "/w.tsv", fixtures + "/list.csv"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stdout.contains("Accuracy"), "the report: \(result.stdout)")
        XCTAssertTrue(result.stderr.contains("--errors \(directory)/w.tsv: cannot write: File too large"), result.stderr)
        XCTAssertTrue(result.stderr.contains("--plot \(directory)/c.png: cannot draw the confusion matrix"), result.stderr)
        XCTAssertTrue(result.stderr.contains("the report above is complete"), result.stderr)
    }

    // MARK: eval label files

    private func list(_ lines: [String]) throws -> String {
        let file = directory + "/list.csv"
        let images = CLI.root.appendingPathComponent(fixtures).path
        let text = lines.map { $0.replacingOccurrences(of: "IMAGES", with: images) }.joined(separator: "\n") + "\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// The first image listed by the fixture list, as an absolute path.
    private func firstFixtureImage() throws -> String {
        let text = try String(contentsOfFile: CLI.root.appendingPathComponent(fixtures + "/list.csv").path, encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { !$0.hasPrefix("#") && !$0.lowercased().hasPrefix("path") })
        return "IMAGES/" + line.split(separator: ",")[0]
    }

    func testANULByteInAListedPathRefusesTheLine() throws {
        let image = try firstFixtureImage()
        let file = try list(["\(image),Happiness", "\(image)\u{0}junk,Happiness"])
        let result = try CLI.run(["eval", file])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("\(file):2: NUL byte at column"), result.stderr)
        XCTAssertEqual(result.stdout, "")
    }

    func testDuplicatesAreCountedAndConflictsRefused() throws {
        let image = try firstFixtureImage()
        let file = try list(["\(image),Happiness", "\(image),happy", "\(image),Happiness"])
        let text = try CLI.run(["eval", file])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("Dataset:     \(file) (label list): 1 images"), text.stdout)
        XCTAssertTrue(text.stdout.contains("Duplicates:  2 label-file lines repeat an earlier line's image and class, skipped"), text.stdout)
        let json = try CLI.run(["eval", "--json", file])
        XCTAssertEqual(json.json["evaluated"] as? Int, 1)
        XCTAssertEqual((json.json["dataset"] as? [String: Any])?["duplicate_lines"] as? [String], ["\(file):2", "\(file):3"])
        let conflict = try list(["\(image),Happiness", "\(image),Fear"])
        let refused = try CLI.run(["eval", conflict])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("\(conflict):2: ") && refused.stderr.contains("is labelled Fear here but Happiness on line 1"),
                      refused.stderr)
    }

    /// A 4 MB line is refused at once, quoting 200 bytes of it, not echoed whole.
    func testAnOverlongLineIsRefusedWithAShortMessage() throws {
        let file = try list([String(repeating: "a", count: 4 << 20) + ",Happiness"])
        let result = try CLI.run(["eval", file])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("\(file):1: line is over the 65536-byte limit"), String(result.stderr.prefix(500)))
        XCTAssertLessThan(result.stderr.utf8.count, 600)
    }

    // MARK: photos

    func testDetectSizeIsBoundedOnBothSides() throws {
        try requireGroupPhoto()
        for command in [[String](), ["eval", "--detect"], ["bench", "--photo", group]] {
            let over = try CLI.run(command + ["--detect-size", "4097", command.first == "eval" ? fixtures + "/list.csv" : group])
            XCTAssertEqual(over.status, 2, "\(command): \(over.stderr)")
            XCTAssertTrue(over.stderr.contains("--detect-size must be in 16...4096"), over.stderr)
        }
        let at = try CLI.run(["--detect-size", "4096", group])
        XCTAssertEqual(at.status, 0, at.stderr)
        XCTAssertEqual(at.stdout.split(separator: "\n").count, 6, "t1.jpg's six faces (the photo is never enlarged)")
    }

    /// A 16-bit grey photo goes to the detector as OpenCV reads it (the high byte of each sample), so it
    /// finds the faces of its 8-bit twin; PIL's reading (clipped to 255) would leave a white picture.
    func testA16BitGreyPhotoFindsTheFacesOfIts8BitTwin() throws {
        try requireGroupPhoto()
        let photo = try ImageDecoder.decode(path: CLI.root.appendingPathComponent(group).path).image
        let grey = StoredPNG.luma(rgb: photo.pixels)
        let eight = directory + "/grey8.png", sixteen = directory + "/grey16.png"
        try Data(StoredPNG.grey(width: photo.width, height: photo.height, samples: grey, sixteenBit: false)).write(to: URL(fileURLWithPath: eight))
        try Data(StoredPNG.grey(width: photo.width, height: photo.height, samples: grey, sixteenBit: true)).write(to: URL(fileURLWithPath: sixteen))
        func boxes(_ path: String) throws -> [[Double]] {
            let result = try CLI.run(["--json", path])
            XCTAssertEqual(result.status, 0, result.stderr)
            let faces = (result.json["results"] as? [[String: Any]])?.first?["faces"] as? [[String: Any]] ?? []
            return faces.compactMap { $0["box"] as? [Double] }
        }
        let expected = try boxes(eight)
        XCTAssertGreaterThanOrEqual(expected.count, 5, "the grey twin still shows the faces")
        XCTAssertEqual(try boxes(sixteen), expected)
        // The same file as a 112x112 crop keeps PIL's reading: clipped, so white.
        let crop = directory + "/crop16.png"
        try Data(StoredPNG.grey(width: 112, height: 112, samples: [UInt8](repeating: 40, count: 112 * 112), sixteenBit: true))
            .write(to: URL(fileURLWithPath: crop))
        XCTAssertEqual(try ImageDecoder.decode(path: crop).image.pixels.max(), 255)
    }

    /// With no pixel limit under `ulimit -v`, a header declaring 65500x65500 (12.9 GB of RGB) is refused
    /// with the numbers before the allocation, instead of the process aborting in it.
    func testAHugeImageUnderAMemoryLimitIsRefusedNotAborted() throws {
        var jpeg = [UInt8](try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/images/inputs/jpeg-444-75x51.jpg")))
        let sof = try XCTUnwrap((0..<jpeg.count - 1).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        for k in [5, 7] { (jpeg[sof + k], jpeg[sof + k + 1]) = (0xFF, 0xDC) }  // 65500, libjpeg's largest dimension
        let path = directory + "/huge.jpg"
        try Data(jpeg).write(to: URL(fileURLWithPath: path))
        let result = try runUnder("ulimit -v 4000000", ["--max-pixels", "0", path])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("\(path): not enough memory to decode this JPEG: the 65500x65500 RGB pixels need "
                                             + "12870750000 bytes, but the process may allocate only"), result.stderr)
        XCTAssertFalse(result.stderr.contains("Fatal error"), result.stderr)
    }
}
