import FERImage
import Foundation
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
        var grey = [UInt8](repeating: 0, count: photo.width * photo.height)
        for i in grey.indices {
            let r = Int(photo.pixels[3 * i]), g = Int(photo.pixels[3 * i + 1]), b = Int(photo.pixels[3 * i + 2])
            grey[i] = UInt8((r * 299 + g * 587 + b * 114 + 500) / 1000)
        }
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

    /// With no pixel limit under `ulimit -v`, a header declaring 65535x65535 (12.9 GB of RGB) is refused
    /// with the numbers before the allocation, instead of the process aborting in it.
    func testAHugeImageUnderAMemoryLimitIsRefusedNotAborted() throws {
        var jpeg = [UInt8](try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/images/inputs/jpeg-444-75x51.jpg")))
        let sof = try XCTUnwrap((0..<jpeg.count - 1).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        for k in 5...8 { jpeg[sof + k] = 0xFF }
        let path = directory + "/huge.jpg"
        try Data(jpeg).write(to: URL(fileURLWithPath: path))
        let result = try runUnder("ulimit -v 4000000", ["--max-pixels", "0", path])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("\(path): not enough memory to decode this JPEG: the 65535x65535 RGB pixels need "
                                             + "12884508675 bytes, but the process may allocate only"), result.stderr)
        XCTAssertFalse(result.stderr.contains("Fatal error"), result.stderr)
    }
}

/// Minimal PNG files for tests: grey, 8 or 16 bits, zlib with stored (uncompressed) blocks.
enum StoredPNG {
    static func grey(width: Int, height: Int, samples: [UInt8], sixteenBit: Bool) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (1 + width * 2))
        for y in 0..<height {
            raw.append(0)  // filter None
            for v in samples[y * width..<(y + 1) * width] { raw += sixteenBit ? [v, v] : [v] }  // v * 257 when 16-bit
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            zlib.append(offset + n == raw.count ? 1 : 0)
            zlib += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            zlib += raw[offset..<offset + n]
            offset += n
        } while offset < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        zlib += be32(b << 16 | a)
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [sixteenBit ? 16 : 8, 0, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return png
    }

    private static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        }
        return be32(UInt32(data.count)) + body + be32(~crc)
    }
}
