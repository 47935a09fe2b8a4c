import FERImage
import Foundation
import XCTest

/// `fer-infer` on photos: every face found, aligned and classified, as text and JSON, with the
/// reference's faces (Tests/Fixtures/photos); --detect / --no-detect, --max-faces, --detect-size, and
/// bad inputs beside photos. Photos come from tools/setup (.downloads/photos).
final class PhotoCommandTests: XCTestCase {
    let group = ".downloads/photos/t1.jpg"
    let cat = ".downloads/photos/chelsea.png"
    let crop = ".downloads/samples/Tom_Hanks_54745.png"

    private func requirePhotos() throws {
        for path in [group, cat, crop] where !FileManager.default.fileExists(atPath: CLI.root.appendingPathComponent(path).path) {
            throw XCTSkip("\(path) is missing: run tools/setup")
        }
    }

    private func reference(_ name: String) throws -> [[String: Any]] {
        let data = try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/photos/\(name).json"))
        return try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["faces"] as? [[String: Any]])
    }

    func testTextPrintsOneLinePerFaceBestFirstAndSaysWhenThereIsNone() throws {
        try requirePhotos()
        let result = try CLI.run([group, cat, crop])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let faces = try reference("t1-640")
        let labels = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
        XCTAssertEqual(lines.count, 6 + 1 + 1, result.stdout)
        for (k, face) in faces.enumerated() {
            let box = (face["box"] as! [Double]).map { String(Int($0.rounded())) }.joined(separator: ",")
            let prefix = "\(group) face \(k + 1) (\(box)) \(String(format: "%.2f", face["score"] as! Double)): \(labels[face["label"] as! Int]) "
            XCTAssertTrue(lines[k].hasPrefix(prefix), "\(lines[k]) does not start with \(prefix)")
        }
        XCTAssertEqual(lines[6], "\(cat): no face found")
        XCTAssertTrue(lines[7].hasPrefix("\(crop): "), "a 112x112 crop is classified as it is: \(lines[7])")
        XCTAssertFalse(result.stderr.contains("note"), "a detected photo gets no resize note: \(result.stderr)")
    }

    func testJSONGivesEveryFaceWithBoxScoreLandmarksAndTheClassification() throws {
        try requirePhotos()
        let result = try CLI.run(["--json", "--top-k", "2", group, crop])
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try XCTUnwrap(result.json["results"] as? [[String: Any]])
        XCTAssertEqual(records.count, 2)
        let photo = records[0]
        XCTAssertEqual(photo["input"] as? String, group)
        XCTAssertEqual(photo["width"] as? Int, 1280)
        XCTAssertEqual(photo["height"] as? Int, 886)
        XCTAssertEqual(photo["detector_input"] as? [Int], [640, 443])
        let faces = try XCTUnwrap(photo["faces"] as? [[String: Any]])
        for (got, want) in zip(faces, try reference("t1-640")) {
            for (a, b) in zip(got["box"] as! [Double], want["box"] as! [Double]) { XCTAssertEqual(a, b, accuracy: 0.5) }
            for (p, q) in zip(got["landmarks"] as! [[Double]], want["landmarks"] as! [[Double]]) {
                XCTAssertEqual(p[0], q[0], accuracy: 0.5)
                XCTAssertEqual(p[1], q[1], accuracy: 0.5)
            }
            XCTAssertEqual(got["index"] as? Int, want["label"] as? Int)
            XCTAssertEqual((got["probabilities"] as? [Double])?.count, 7)
            XCTAssertEqual((got["top_k"] as? [[String: Any]])?.count, 2)
            XCTAssertNotNil(got["score"] as? Double)
        }
        XCTAssertEqual(faces.count, 6)
        XCTAssertEqual(faces.map { $0["score"] as! Double }, faces.map { $0["score"] as! Double }.sorted(by: >))
        XCTAssertNotNil((photo["timing_ms"] as? [String: Double])?["detect"])
        XCTAssertNil(records[1]["faces"], "the crop is classified as before")
        XCTAssertNotNil(records[1]["label"])
    }

    func testDetectAndNoDetectForceEitherWay() throws {
        try requirePhotos()
        let whole = try CLI.run(["--no-detect", group])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertEqual(whole.stdout.split(separator: "\n").count, 1)
        XCTAssertTrue(whole.stderr.contains("note: image is 1280x886"), whole.stderr)
        let forced = try CLI.run(["--json", "--detect", crop])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertNotNil((forced.json["results"] as? [[String: Any]])?.first?["faces"], "a 112x112 image goes through the detector with --detect")
        let npy = try CLI.run(["--detect", "Tests/Fixtures/inputs/random-b2.npy", group])
        XCTAssertEqual(npy.status, 1)
        XCTAssertTrue(npy.stderr.contains("--detect needs images"), npy.stderr)
        XCTAssertEqual(npy.stdout.split(separator: "\n").count, 6, "the photo beside it is still analysed")
    }

    func testMaxFacesAndDetectSize() throws {
        try requirePhotos()
        let two = try CLI.run(["--max-faces", "2", group])
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertEqual(two.stdout.split(separator: "\n").count, 2)
        XCTAssertTrue(two.stderr.contains("more than 2 faces above the threshold"), two.stderr)
        let small = try CLI.run(["--json", "--detect-size", "320", group])
        let record = (small.json["results"] as? [[String: Any]])?.first
        XCTAssertEqual(record?["detector_input"] as? [Int], [320, 222])
        let faces = record?["faces"] as? [[String: Any]] ?? []
        XCTAssertEqual(faces.map { $0["index"] as? Int }, try reference("t1-320").map { $0["label"] as? Int })
        let strict = try CLI.run(["--detect-threshold", "0.999", group])
        XCTAssertLessThan(strict.stdout.split(separator: "\n").count, 6)
        for bad in [["--detect-size", "8"], ["--detect-threshold", "1"], ["--max-faces", "0"], ["--no-detect", "--crops", "/tmp"], ["--no-detect", "--annotate", "/tmp"]] {
            let usage = try CLI.run(bad + [group])
            XCTAssertEqual(usage.status, 2, "\(bad): \(usage.stderr)")
        }
    }

    /// A bad input beside a photo: one line for it, exit 1, the photo's faces still reported, and
    /// the JSON still valid, with the bad input's error in its place; a missing or wrong detector is one clear error.
    func testBadInputsBesidePhotosAndBadDetectors() throws {
        try requirePhotos()
        let json = try CLI.run(["--json", "/no/such/photo.jpg", group])
        XCTAssertEqual(json.status, 1)
        XCTAssertTrue(json.stderr.contains("/no/such/photo.jpg"), json.stderr)
        let results = json.json["results"] as? [[String: Any]] ?? []
        XCTAssertEqual(results.map { $0["input"] as? String }, ["/no/such/photo.jpg", group], "every input, in order")
        XCTAssertTrue(((results.first?["error"] as? [String: Any])?["message"] as? String ?? "").contains("no such file"), json.stdout)
        XCTAssertEqual((results.last?["faces"] as? [Any])?.count, 6)
        let missing = try CLI.run(["--detector", "/no/such/detector.pth", group])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("/no/such/detector.pth"), missing.stderr)
        let wrong = try CLI.run(["--detector", "weights/lfnsb7-seeded.pth", group])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("not a face detector"), wrong.stderr)
        let cropOnly = try CLI.run(["--detector", "/no/such/detector.pth", crop])
        XCTAssertEqual(cropOnly.status, 0, "crops never load the detector: \(cropOnly.stderr)")
    }

    func testBenchPhotoModeReportsEveryStage() throws {
        try requirePhotos()
        let result = try CLI.run(["bench", "--photo", group, "--iterations", "2", "--warmup", "0", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.json["faces"] as? Int, 6)
        XCTAssertEqual(result.json["detector_input"] as? [Int], [640, 443])
        let stages = try XCTUnwrap(result.json["stages"] as? [String: [String: Double]])
        XCTAssertEqual(Set(stages.keys), ["decode", "detect", "detect_network", "align", "classify", "total"])
        for (name, figures) in stages { XCTAssertGreaterThan(figures["p50_ms"] ?? 0, 0, name) }
        XCTAssertLessThanOrEqual(stages["detect_network"]!["p50_ms"]!, stages["detect"]!["p50_ms"]!)
        let text = try CLI.run(["bench", "--photo", group, "--iterations", "1", "--warmup", "0"])
        XCTAssertTrue(text.stdout.contains("6 faces"), text.stdout)
        XCTAssertEqual(try CLI.run(["bench", "--photo", "/no/such.jpg"]).status, 1)
    }

    /// An embedder (LFN) gives a unit embedding per face, in JSON and as text.
    func testEmbeddersGiveAnEmbeddingPerFace() throws {
        try requirePhotos()
        let model = "Tests/Fixtures/models/lfn/model.pth"
        let json = try CLI.run(["--json", "--model", model, group])
        XCTAssertEqual(json.status, 0, json.stderr)
        let faces = try XCTUnwrap(((json.json["results"] as? [[String: Any]])?.first?["faces"] as? [[String: Any]]))
        XCTAssertEqual(faces.count, 6)
        for face in faces {
            let embedding = try XCTUnwrap(face["embedding"] as? [Double])
            XCTAssertEqual(embedding.count, 256)
            XCTAssertEqual(embedding.map { $0 * $0 }.reduce(0, +), 1, accuracy: 1e-4)
            XCTAssertNil(face["label"])
            XCTAssertNotNil(face["box"])
        }
        let text = try CLI.run(["--model", model, group])
        XCTAssertTrue(text.stdout.contains("\(group) face 1 ("), text.stdout)
        XCTAssertTrue(text.stdout.contains("embedding (256 values)"), text.stdout)
    }

    /// --crops: each aligned face as DIR/<stem>_face<k>.png, the reference's crops within one level on
    /// average, named in the JSON; two inputs with one stem never overwrite each other; a DIR that
    /// cannot be made is one clear error.
    func testCropsAreWrittenAsPNGsEqualToTheReferenceCrops() throws {
        try requirePhotos()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-crops-\(getpid())-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("crops").path
        let result = try CLI.run(["--json", "--crops", out, group, cat])
        XCTAssertEqual(result.status, 0, result.stderr)
        let faces = ((result.json["results"] as? [[String: Any]])?.first?["faces"] as? [[String: Any]]) ?? []
        // Numbered as the text output and the JSON's "face" number them: from 1, best first.
        XCTAssertEqual(faces.map { $0["face"] as? Int }, Array(1...6))
        XCTAssertEqual(faces.map { $0["crop"] as? String }, (1...6).map { "\(out)/t1_face\($0).png" })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), (1...6).map { "t1_face\($0).png" })
        let crops = try Data(contentsOf: CLI.root.appendingPathComponent("Tests/Fixtures/photos/t1-640.crops.npy"))
        let header = 10 + Int(crops[8]) | Int(crops[9]) << 8
        let plane = 112 * 112 * 3
        for k in 0..<6 {
            let png = try Data(contentsOf: URL(fileURLWithPath: "\(out)/t1_face\(k + 1).png"))
            XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
            let pixels = try pngPixels(png)
            let reference = crops[(header + k * plane)..<(header + (k + 1) * plane)]
            let mean = zip(pixels, reference).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } / Double(plane)
            XCTAssertLessThanOrEqual(mean, 1.0, "crop \(k)")
        }
        // The same stem from another folder: refused for that input, the first crops stay.
        let other = dir.appendingPathComponent("t1.jpg")
        try FileManager.default.copyItem(at: CLI.root.appendingPathComponent(group), to: other)
        let clash = try CLI.run(["--crops", out, group, other.path])
        XCTAssertEqual(clash.status, 1)
        XCTAssertTrue(clash.stderr.contains("would overwrite those of \(group)"), clash.stderr)
        XCTAssertEqual(clash.stdout.split(separator: "\n").count, 12, "both photos are still reported")
        let blocked = try CLI.run(["--crops", other.path, group])
        XCTAssertEqual(blocked.status, 1)
        XCTAssertTrue(blocked.stderr.contains("--crops") && blocked.stderr.contains("not a directory"), blocked.stderr)
    }

    /// --annotate: the photo as DIR/<stem>.png, the same size, each face's box drawn in its class's
    /// colour with a tag of that colour above it, everything away from the faces untouched; a photo
    /// without faces is written unchanged.
    func testAnnotatedPhotosShowEveryFace() throws {
        try requirePhotos()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-annotate-\(getpid())-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let result = try CLI.run(["--json", "--annotate", dir.path, group, cat])
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try XCTUnwrap(result.json["results"] as? [[String: Any]])
        XCTAssertEqual(records.map { $0["annotated"] as? String }, [dir.path + "/t1.png", dir.path + "/chelsea.png"])
        let original = try ImageDecoder.decode(path: CLI.root.appendingPathComponent(group).path).image
        let drawn = try ImageDecoder.decode(path: dir.path + "/t1.png").image
        XCTAssertEqual([drawn.width, drawn.height], [original.width, original.height])
        func pixel(_ image: RGBImage, _ x: Int, _ y: Int) -> [UInt8] { Array(image.pixels[(y * image.width + x) * 3..<(y * image.width + x) * 3 + 3]) }
        // Box colours, one per class (fer-infer's Annotation.palette).
        let palette: [[UInt8]] = [[0xE6, 0x19, 0x4B], [0x3C, 0xB4, 0x4B], [0x43, 0x63, 0xD8], [0xF5, 0x82, 0x31],
                                  [0x91, 0x1E, 0xB4], [0x42, 0xD4, 0xF4], [0xF0, 0x32, 0xE6], [0xBF, 0xEF, 0x45]]
        let faces = try XCTUnwrap(records[0]["faces"] as? [[String: Any]])
        XCTAssertEqual(faces.count, 6)
        for face in faces {
            let box = (face["box"] as! [Double])
            let color = palette[(face["index"] as! Int) % palette.count]
            let midY = Int((box[1] + box[3]) / 2)
            XCTAssertEqual(pixel(drawn, Int(box[0].rounded(.down)), midY), color, "left edge of \(box)")
            XCTAssertEqual(pixel(drawn, Int(box[2].rounded(.down)), midY), color, "right edge of \(box)")
            XCTAssertEqual(pixel(drawn, Int(box[0]) + 2, max(0, Int(box[1]) - 8)), color, "tag above \(box)")
        }
        for (x, y) in [(640, 800), (10, 870), (1270, 600)] { XCTAssertEqual(pixel(drawn, x, y), pixel(original, x, y), "(\(x), \(y))") }
        let catOriginal = try ImageDecoder.decode(path: CLI.root.appendingPathComponent(cat).path).image
        XCTAssertEqual(try ImageDecoder.decode(path: dir.path + "/chelsea.png").image.pixels, catOriginal.pixels)
    }

    /// An output folder that is the inputs' own: no input is ever written over, by its own annotation or
    /// another's (`a.jpg` annotated as `a.png` when `a.png` is an input too, or a link to one), and the
    /// inputs are all still analysed as they were.
    func testOutputsNeverOverwriteAnInput() throws {
        try requirePhotos()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fer-own-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let photo = dir.appendingPathComponent("chelsea.png").path
        try FileManager.default.copyItem(atPath: CLI.root.appendingPathComponent(cat).path, toPath: photo)
        let jpeg = dir.appendingPathComponent("t1.jpg").path
        try FileManager.default.copyItem(atPath: CLI.root.appendingPathComponent(group).path, toPath: jpeg)
        let linked = dir.appendingPathComponent("t1.png").path  // t1.jpg's annotation would land on this link's target
        try FileManager.default.createSymbolicLink(atPath: linked, withDestinationPath: photo)
        let before = try Data(contentsOf: URL(fileURLWithPath: photo))
        let result = try CLI.run(["--annotate", dir.path, photo, jpeg])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stdout.split(separator: "\n").count, 1 + 6, result.stdout)
        XCTAssertTrue(result.stderr.contains("\(photo): --annotate: \(photo) is the input \(photo); not overwritten"), result.stderr)
        XCTAssertTrue(result.stderr.contains("\(jpeg): --annotate: \(linked) is the input \(photo); not overwritten"), result.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: photo)), before, "the input is untouched")
        // Crops into the same folder do not touch the photos; an unrelated name is still written.
        let crops = try CLI.run(["--crops", dir.path, jpeg])
        XCTAssertEqual(crops.status, 0, crops.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("t1_face1.png").path))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: photo)), before)
    }

    /// The RGB bytes of a PNG file.
    private func pngPixels(_ data: Data) throws -> [UInt8] {
        try ImageDecoder.decode(bytes: [UInt8](data)).image.pixels
    }
}
