import ArgumentParser
import Dispatch
import FEREngine
import FERImage
import FERRuntime
import FERTensor
import Foundation

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify faces in photos and face crops (or embed them, for LFN/MFN models).",
        discussion: """
            Inputs are PNG or JPEG images, directories (the .png/.jpg/.jpeg images inside them), or NumPy \
            .npy float32 arrays shaped [N,3,112,112] or [3,112,112] that are already normalised.

            An image of exactly 112x112 is taken as an aligned face crop and classified as it is. Any other \
            image is a photo: RetinaFace (--detector, default \(DefaultModel.detectorRelativePath)) finds \
            every face on the photo shrunk to --detect-size, each face is aligned to 112x112 on its five \
            landmarks as the LFNSB authors did, and classified. --detect and --no-detect force either way \
            (--no-detect resizes the whole image to 112x112 as the authors' evaluation transform does, with a note).

            Output: one line per crop with the top label and its probability (--top-k for more), or one line \
            per face (`photo.jpg face 1 (x1,y1,x2,y2) 0.99: Happiness 0.830`, best face first; a photo \
            without a face says so and is not an error). --json prints per crop input, label, probability, \
            labels, logits, probabilities and timing, and per photo input, width, height and faces (box, \
            score, landmarks and the same fields per face). --crops DIR writes each aligned face as \
            DIR/<stem>_face<k>.png (k the face's number: from 1, best first, as in the text output and as \"face\" in the JSON); --annotate DIR writes each photo with its faces' \
            boxes, landmarks and labels drawn as DIR/<stem>.png.

            Exit status: 0 all inputs classified, 1 some inputs failed (each named on stderr; the others \
            are still classified, and --json output stays valid, with an entry {"input", "error": {"message"}} \
            in its place for each input that failed), 2 usage errors. A .npy sample holding \
            NaN or infinity, or whose outputs overflow, fails alone, named as FILE[SAMPLE].

            Examples:
              fer-infer face.png
              fer-infer group.jpg
              fer-infer --json --crops crops/ photos/
              fer-infer --annotate annotated/ group.jpg
              fer-infer --top-k 3 crops/
              fer-infer classify --json --model my-lfnsb.pth --labels affectnet7 a.jpg b.png
              fer-infer classify --batch 32 --threads 2 crops/
              fer-infer classify --json inputs.npy
            """)

    @Argument(help: "Images (.png, .jpg), directories of images, or normalised .npy arrays.")
    var inputs: [String] = []

    @Option(help: "Model file: a PyTorch checkpoint (.pth/.pt) or a fused .safetensors. Default: \(ModelLocator.defaultName).")
    var model: String?

    @Option(help: "Label names: rafdb, affectnet7, affectnet8, or a text file with one name per line. Default: rafdb for 7 classes, affectnet8 for 8.")
    var labels: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Option(name: .customLong("top-k"), help: "Print the K most probable labels per image.")
    var topK = 1

    @Option(help: "Threads for the runtime (BLAS included).")
    var threads = 1

    @Option(help: "Images per forward pass.")
    var batch = 8

    @Option(name: .customLong("max-pixels"), help: "Refuse images with more pixels than this (decompression bombs); 0 for no limit.")
    var maxPixels = ImageDecodingOptions.pilMaxImagePixels

    @Flag(inversion: .prefixedNo, help: "Detect faces in every image (--detect) or in none (--no-detect). Default: in every image that is not 112x112.")
    var detect: Bool?

    @Option(help: "Face detector (RetinaFace checkpoint). Default: \(DefaultModel.detectorRelativePath).")
    var detector: String?

    @Option(name: .customLong("detect-size"), help: "Long side of the detector input; larger photos are shrunk to it, never enlarged.")
    var detectSize = FaceDetectionOptions().detectSize

    @Option(name: .customLong("detect-threshold"), help: "Minimum face score, in [0, 1).")
    var detectThreshold = FaceDetectionOptions().threshold

    @Option(name: .customLong("max-faces"), help: "Most faces classified per photo, best first.")
    var maxFaces = FaceDetectionOptions().maxFaces

    @Option(help: "Write each aligned face as DIR/<input stem>_face<k>.png (k the face's number, from 1, best first; made if missing).")
    var crops: String?

    @Option(help: "Write each photo with its faces' boxes, landmarks and labels drawn as DIR/<input stem>.png (made if missing).")
    var annotate: String?

    /// The detection options the flags give.
    var detectionOptions: FaceDetectionOptions {
        FaceDetectionOptions(detectSize: detectSize, threshold: detectThreshold, maxFaces: maxFaces)
    }

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("no inputs: give image files, directories or .npy files") }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard maxPixels >= 0 else { throw ValidationError("--max-pixels must be 0 (no limit) or positive") }
        guard (16...FaceDetectionOptions.maxDetectSize).contains(detectSize) else {
            throw ValidationError("--detect-size must be in 16...\(FaceDetectionOptions.maxDetectSize) (the detector needs about 47 bytes per pixel of its input)")
        }
        guard detectThreshold.isFinite, detectThreshold >= 0, detectThreshold < 1 else {
            throw ValidationError("--detect-threshold must be in [0, 1)")
        }
        guard maxFaces >= 1 else { throw ValidationError("--max-faces must be at least 1") }
        if detect == false, crops != nil || annotate != nil {
            throw ValidationError("--crops and --annotate need face detection; drop --no-detect")
        }
    }

    /// One model input: a preprocessed image, or one sample of a .npy batch.
    private struct Sample {
        /// Where its input stands on the command line (after directories are expanded).
        let order: Int
        let input: String
        let sample: Int?
        let data: ArraySlice<Float>  // 112x112x3 (channel-last), normalised
        let decodeMs: Double
        let preprocessMs: Double
        /// `file` or `file[sample]`, as messages and text output name it.
        var shown: String { sample.map { "\(input)[\($0)]" } ?? input }
    }

    func run() throws {
        let modelPath = try ModelLocator.resolve(model)
        let model: FERModel
        do { model = try FERModel(contentsOf: modelPath) } catch {
            throw CLIError("\(modelPath): \(error)")
        }
        guard model.outputWidth > 0 else { throw CLIError("\(modelPath): \(ClassifierError.notAClassifier(model.architecture.description))") }
        let names = try Classify.labelNames(labels, for: model)
        // Made at the first forward pass, sized to it: a single image never pays for a batch of buffers.
        var classifier: FERClassifier?
        let options = ImageDecodingOptions(maxPixels: maxPixels == 0 ? nil : maxPixels)
        var failures = 0
        var records: [(order: Int, record: [String: Any])] = []
        var pending: [Sample] = []
        let plane = ModelInput.shape.reduce(1, *)
        var batchInput: [Float] = []

        func fail(_ message: String) {
            failures += 1
            FileHandle.standardError.write(Data("fer-infer: \(message)\n".utf8))
        }
        /// An input (or one sample of it) that gave no result: named on stderr, and in the JSON in its place.
        func fail(_ order: Int, _ input: String, sample: Int? = nil, _ message: String) {
            fail(message)
            var record: [String: Any] = ["input": input, "error": ["message": message]]
            if let sample { record["sample"] = sample }
            records.append((order, record))
        }
        func flush() throws {
            guard !pending.isEmpty else { return }
            defer { pending.removeAll(keepingCapacity: true) }
            batchInput.removeAll(keepingCapacity: true)
            for sample in pending { batchInput.append(contentsOf: sample.data) }
            if classifier == nil {
                classifier = try FERClassifier(model: model, labels: names.isEmpty ? nil : names, maxBatch: pending.count, threads: threads)
            }
            let start = DispatchTime.now().uptimeNanoseconds
            let results: [Result<Classification, ClassifierError>]
            do {
                results = try classifier!.classifyEach(channelsLast: Tensor(shape: [pending.count] + ModelInput.channelsLastShape, data: batchInput))
            } catch {
                // The batch as a whole was refused: every input in it failed, the later ones still run.
                for sample in pending { fail(sample.order, sample.input, sample: sample.sample, "\(sample.shown): \(error)") }
                return
            }
            let inferenceMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(pending.count)
            for (sample, outcome) in zip(pending, results) {
                let result: Classification
                switch outcome {
                case .success(let r): result = r
                case .failure(let error):
                    fail(sample.order, sample.input, sample: sample.sample, "\(sample.shown): \(error.problem)")
                    continue
                }
                var record = withTopK(result.jsonFields(labels: names), result, names: names)
                record["input"] = sample.input
                if let n = sample.sample { record["sample"] = n }
                record["timing_ms"] = ["decode": sample.decodeMs, "preprocess": sample.preprocessMs, "inference": inferenceMs]
                if !json { print("\(sample.shown): \(summary(result, names: names))") }
                records.append((sample.order, record))
            }
        }
        // The detector is loaded for the first photo: crop-only runs never pay for it.
        var analyzer: FaceAnalyzer?
        func faceAnalyzer() throws -> FaceAnalyzer {
            if let analyzer { return analyzer }
            let path: String
            do { path = try DefaultModel.resolveDetector(detector) } catch { throw CLIError("\(error)") }
            if classifier == nil {
                classifier = try FERClassifier(model: model, labels: names.isEmpty ? nil : names, maxBatch: batch, threads: threads)
            }
            do {
                analyzer = try FaceAnalyzer(detector: try FERModel(contentsOf: path), classifier: classifier!,
                                            options: detectionOptions, threads: threads)
            } catch { throw CLIError("\(path): \(error)") }
            ProcessMemory.keepFreedBuffers()  // photo after photo: reuse their buffers
            return analyzer!
        }
        let paths = expand(FileNames.commandLineBytes(for: inputs))
        // Outputs never replace an input, whatever it is called.
        let inputFiles = Dictionary(paths.compactMap { entry in FileNames.identity(of: entry.path).map { ($0, entry.path) } },
                                    uniquingKeysWith: { first, _ in first })
        var cropFolder = try OutputFolder(option: "--crops", argument: crops, inputs: inputFiles)
        var annotateFolder = try OutputFolder(option: "--annotate", argument: annotate, inputs: inputFiles)
        /// Writes the aligned faces of `analysis` as DIR/<stem>_face<k>.png; returns their names (nil where not written).
        func writeCrops(_ analysis: PhotoAnalysis, path: String, raw: [UInt8]) -> [String?] {
            guard cropFolder != nil, !analysis.faces.isEmpty else { return analysis.faces.map { _ in nil } }
            switch cropFolder!.claim(raw, for: path, what: "crops", pattern: { "\($0)_face<k>.png" }) {
            case .failure(let error):
                fail(error.description)
                return analysis.faces.map { _ in nil }
            case .success(let stem):
                return analysis.faces.enumerated().map { k, face in
                    do { return try cropFolder!.writePNG(face.alignment.image, name: stem + Array("_face\(k + 1).png".utf8)) } catch {
                        fail("\(path): face \(k + 1): \(error)")
                        return nil
                    }
                }
            }
        }
        /// Writes the photo with its faces drawn as DIR/<stem>.png; returns the file's name (nil when not written).
        func writeAnnotated(_ analysis: PhotoAnalysis, image: RGBImage, path: String, raw: [UInt8]) -> String? {
            guard annotateFolder != nil else { return nil }
            switch annotateFolder!.claim(raw, for: path, what: "annotated photo", pattern: { "\($0).png" }) {
            case .failure(let error):
                fail(error.description)
                return nil
            case .success(let stem):
                do { return try annotateFolder!.writePNG(try Annotation.draw(analysis, on: image), name: stem + Array(".png".utf8)) } catch {
                    fail("\(path): --annotate: \(error)")
                    return nil
                }
            }
        }
        func report(_ analysis: PhotoAnalysis, order: Int, image: RGBImage, path: String, raw: [UInt8], decodeMs: Double) {
            if analysis.truncated {
                FileHandle.standardError.write(Data("fer-infer: \(path): more than \(maxFaces) faces above the threshold; the \(maxFaces) best are reported (--max-faces)\n".utf8))
            }
            var record = analysis.jsonFields(labels: names)
            let cropFiles = writeCrops(analysis, path: path, raw: raw)
            let faceFields = record["faces"] as? [[String: Any]] ?? []
            record["faces"] = zip(faceFields, zip(analysis.faces, cropFiles)).map { fields, face in
                var fields = withTopK(fields, face.0.classification, names: names)
                if let crop = face.1 { fields["crop"] = crop }
                return fields
            }
            for (k, analyzed) in analysis.faces.enumerated() where !json {
                let face = analyzed.face
                let box = face.box.map { String(Int($0.rounded())) }.joined(separator: ",")
                print("\(path) face \(k + 1) (\(box)) \(String(format: "%.2f", face.score)): \(summary(analyzed.classification, names: names))")
            }
            if analysis.faces.isEmpty, !json { print("\(path): no face found") }
            let t = analysis.timing
            record["input"] = path
            if let annotated = writeAnnotated(analysis, image: image, path: path, raw: raw) { record["annotated"] = annotated }
            record["timing_ms"] = ["decode": decodeMs, "detect": t.detect, "align": t.align, "classify": t.classify]
            records.append((order, record))
        }
        func enqueue(_ sample: Sample) throws {
            pending.append(sample)
            if pending.count == batch { try flush() }
        }

        for (order, entry) in paths.enumerated() {
            let raw = entry.path
            let path = FileNames.display(raw)
            if let failure = entry.failure {
                fail(order, path, failure)
                continue
            }
            if path.lowercased().hasSuffix(".npy") {
                if detect == true {
                    fail(order, path, "\(path): --detect needs images; a .npy array holds model inputs, already cropped and normalised")
                    continue
                }
                do {
                    // Read by the name's bytes (it need not be UTF-8), as a regular file of bounded size.
                    let bytes: [UInt8]
                    do { bytes = try ImageDecoder.readFile(pathBytes: raw, maxBytes: Classify.maxArrayFileBytes) } catch {
                        fail(order, path, error.description)
                        continue
                    }
                    let array: Tensor
                    do { array = try NPY.decode(bytes) } catch var error as NPYError {
                        error.path = path
                        throw error
                    }
                    guard let count = ModelInput.batchCount(of: array.shape) else {
                        fail(order, path, "\(path): array has shape \(array.shape), expected \(ModelInput.describe())")
                        continue
                    }
                    // .npy files are PyTorch's layout; the engine's is channel-last.
                    let tensor = array.channelsLast()
                    for n in 0..<count {
                        try enqueue(Sample(order: order, input: path, sample: tensor.shape.count == 4 ? n : nil,
                                           data: tensor.data[n * plane..<(n + 1) * plane], decodeMs: 0, preprocessMs: 0))
                    }
                } catch let error as NPYError {
                    fail(order, path, "\(error)")
                }
                continue
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let decoded: DecodedImage
            do { decoded = try ImageDecoder.decode(pathBytes: raw, options: options) } catch {
                fail(order, path, error.description)
                continue
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            let isPhoto = detect ?? !(decoded.image.width == ModelInput.size && decoded.image.height == ModelInput.size)
            for note in decoded.notes {
                if isPhoto, case .resizedToModelInput = note.kind { continue }
                FileHandle.standardError.write(Data("fer-infer: \(note)\n".utf8))
            }
            if isPhoto {
                try flush()  // results stay in input order
                // Photos go to the detector as OpenCV reads them (the authors detected on cv2.imread's pixels).
                var photo = decoded
                if decoded.readingMatters {
                    do { photo = try ImageDecoder.decode(pathBytes: raw, options: options.forPhotos) } catch {
                        fail(order, path, error.description)
                        continue
                    }
                }
                let analysis: PhotoAnalysis
                do { analysis = try faceAnalyzer().analyze(photo.image) } catch let error as CLIError { throw error } catch {
                    fail(order, path, "\(path): \(error)")
                    continue
                }
                report(analysis, order: order, image: photo.image, path: path, raw: raw, decodeMs: Double(t1 - t0) / 1e6)
                continue
            }
            let tensor = Preprocessing.modelInputChannelsLast(decoded.image)
            let t2 = DispatchTime.now().uptimeNanoseconds
            try enqueue(Sample(order: order, input: path, sample: nil, data: tensor.data[...],
                               decodeMs: Double(t1 - t0) / 1e6, preprocessMs: Double(t2 - t1) / 1e6))
        }
        try flush()

        if json {
            // In input order: a batch's results arrive after the failures of inputs read behind them.
            let results = records.enumerated().sorted { ($0.element.order, $0.offset) < ($1.element.order, $1.offset) }.map(\.element.record)
            let object: [String: Any] = ["model": modelPath, "architecture": model.architecture.description, "results": results]
            // Every value is finite (the classifier refuses samples whose results are not), so this succeeds.
            let data: Data
            do { data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) } catch {
                throw CLIError("cannot write the results as JSON: \(error)")
            }
            print(String(decoding: data, as: UTF8.self))
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// `record` (a result's JSON fields) with `top_k` added when more than one label is asked for.
    private func withTopK(_ record: [String: Any], _ result: Classification, names: [String]) -> [String: Any] {
        var record = record
        if result.label != nil, topK > 1 {
            record["top_k"] = result.top(topK).map { ["label": names[$0], "index": $0, "probability": result.probabilities[$0]] as [String: Any] }
        }
        return record
    }

    /// The text after `input:` for one result: the top labels with probabilities, or an embedding's start.
    private func summary(_ result: Classification, names: [String]) -> String {
        if result.label != nil {
            return result.top(topK).map { "\(names[$0]) \(String(format: "%.3f", result.probabilities[$0]))" }.joined(separator: ", ")
        }
        let embedding = result.embedding ?? []
        return "embedding (\(embedding.count) values) \(embedding.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: " ")) ..."
    }

    /// Largest `.npy` file read: 4 GiB, about 28,000 normalised 112x112 images.
    static let maxArrayFileBytes = 1 << 32

    /// Inputs in order, directories replaced by the images inside them (sorted), or by themselves with
    /// the reason when they cannot be listed. Paths are bytes: Linux file names need not be UTF-8.
    private func expand(_ inputs: [[UInt8]]) -> [(path: [UInt8], failure: String?)] {
        var paths: [(path: [UInt8], failure: String?)] = []
        for input in inputs {
            guard ImageDecoder.isDirectory(input) else { paths.append((input, nil)); continue }
            do { paths += try ImageDecoder.imageFiles(inDirectory: input).map { ($0, nil) } } catch { paths.append((input, error.description)) }
        }
        return paths
    }

    /// Label names for a classifier (none for an embedder) from a `--labels` choice
    /// (``LabelChoice``); a choice that does not fit is a usage error.
    static func labelNames(_ labels: String?, for model: FERModel) throws -> [String] {
        guard let classes = model.architecture.classCount else { return [] }
        do { return try LabelChoice.names(labels, classes: classes) } catch {
            throw ValidationError("--labels: \(error)")
        }
    }
}

/// The default model, as both executables find it (see ``DefaultModel``).
enum ModelLocator {
    static let defaultName = DefaultModel.relativePath

    static func resolve(_ explicit: String?) throws -> String {
        do { return try DefaultModel.resolve(explicit) } catch { throw CLIError("\(error)") }
    }
}

/// A failure reported as one line on stderr with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
