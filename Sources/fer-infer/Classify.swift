import ArgumentParser
import Dispatch
import FEREngine
import FERImage
import FERRuntime
import FERTensor
import Foundation

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify face images (or embed them, for LFN/MFN models).",
        discussion: """
            Inputs are PNG or JPEG images (any size; resized to 112x112 exactly as the authors' evaluation
            transform does, with PIL's bilinear filter, then normalised with the ImageNet mean and std),
            directories (the .png/.jpg/.jpeg images inside them), or NumPy .npy float32 arrays shaped
            [N,3,112,112] or [3,112,112] that are already normalised.
            The model expects aligned 112x112 face crops: other images still work and get a one-line note.

            Output: one line per image with the top label and its probability (--top-k for more);
            --json prints, per image, input, label, probability, labels, logits, probabilities and timing.
            Exit status: 0 all inputs classified, 1 some inputs failed (each named on stderr; the others
            are still classified, and --json output stays valid), 2 usage errors. A .npy sample holding
            NaN or infinity, or whose outputs overflow, fails alone, named as FILE[SAMPLE].

            Examples:
              fer-infer face.png
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

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("no inputs: give image files, directories or .npy files") }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard maxPixels >= 0 else { throw ValidationError("--max-pixels must be 0 (no limit) or positive") }
    }

    /// One model input: a preprocessed image, or one sample of a .npy batch.
    private struct Sample {
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
        var records: [[String: Any]] = []
        var pending: [Sample] = []
        let plane = ModelInput.shape.reduce(1, *)
        var batchInput: [Float] = []

        func fail(_ message: String) {
            failures += 1
            FileHandle.standardError.write(Data("fer-infer: \(message)\n".utf8))
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
                for sample in pending { fail("\(sample.shown): \(error)") }
                return
            }
            let inferenceMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(pending.count)
            for (sample, outcome) in zip(pending, results) {
                let result: Classification
                switch outcome {
                case .success(let r): result = r
                case .failure(let error):
                    fail("\(sample.shown): \(error.problem)")
                    continue
                }
                var record = result.jsonFields(labels: names)
                record["input"] = sample.input
                if let n = sample.sample { record["sample"] = n }
                record["timing_ms"] = ["decode": sample.decodeMs, "preprocess": sample.preprocessMs, "inference": inferenceMs]
                if result.label != nil {
                    let order = result.top(topK)
                    if topK > 1 {
                        record["top_k"] = order.map { ["label": names[$0], "index": $0, "probability": result.probabilities[$0]] as [String: Any] }
                    }
                    if !json {
                        let top = order.map { "\(names[$0]) \(String(format: "%.3f", result.probabilities[$0]))" }
                        print("\(sample.shown): \(top.joined(separator: ", "))")
                    }
                } else if !json, let embedding = result.embedding {
                    print("\(sample.shown): embedding (\(embedding.count) values) \(embedding.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: " ")) ...")
                }
                records.append(record)
            }
        }
        func enqueue(_ sample: Sample) throws {
            pending.append(sample)
            if pending.count == batch { try flush() }
        }

        for raw in expand(FileNames.commandLineBytes(for: inputs), failing: fail) {
            let path = FileNames.display(raw)
            if path.lowercased().hasSuffix(".npy") {
                do {
                    // Read by the name's bytes (it need not be UTF-8), as a regular file of bounded size.
                    let bytes: [UInt8]
                    do { bytes = try ImageDecoder.readFile(pathBytes: raw, maxBytes: Classify.maxArrayFileBytes) } catch {
                        fail(error.description)
                        continue
                    }
                    let array: Tensor
                    do { array = try NPY.decode(bytes) } catch var error as NPYError {
                        error.path = path
                        throw error
                    }
                    guard let count = ModelInput.batchCount(of: array.shape) else {
                        fail("\(path): array has shape \(array.shape), expected \(ModelInput.describe())")
                        continue
                    }
                    // .npy files are PyTorch's layout; the engine's is channel-last.
                    let tensor = array.channelsLast()
                    for n in 0..<count {
                        try enqueue(Sample(input: path, sample: tensor.shape.count == 4 ? n : nil,
                                           data: tensor.data[n * plane..<(n + 1) * plane], decodeMs: 0, preprocessMs: 0))
                    }
                } catch let error as NPYError {
                    fail("\(error)")
                }
                continue
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let decoded: DecodedImage
            do { decoded = try ImageDecoder.decode(pathBytes: raw, options: options) } catch {
                fail(error.description)
                continue
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            for note in decoded.notes { FileHandle.standardError.write(Data("fer-infer: \(note)\n".utf8)) }
            let tensor = Preprocessing.modelInputChannelsLast(decoded.image)
            let t2 = DispatchTime.now().uptimeNanoseconds
            try enqueue(Sample(input: path, sample: nil, data: tensor.data[...],
                               decodeMs: Double(t1 - t0) / 1e6, preprocessMs: Double(t2 - t1) / 1e6))
        }
        try flush()

        if json {
            let object: [String: Any] = ["model": modelPath, "architecture": model.architecture.description, "results": records]
            // Every value is finite (the classifier refuses samples whose results are not), so this succeeds.
            let data: Data
            do { data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) } catch {
                throw CLIError("cannot write the results as JSON: \(error)")
            }
            print(String(decoding: data, as: UTF8.self))
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// Largest `.npy` file read: 4 GiB, about 28,000 normalised 112x112 images.
    static let maxArrayFileBytes = 1 << 32

    /// Inputs in order, directories replaced by the images inside them (sorted). Paths are bytes:
    /// Linux file names need not be UTF-8.
    private func expand(_ inputs: [[UInt8]], failing fail: (String) -> Void) -> [[UInt8]] {
        var paths: [[UInt8]] = []
        for input in inputs {
            guard ImageDecoder.isDirectory(input) else { paths.append(input); continue }
            do { paths += try ImageDecoder.imageFiles(inDirectory: input) } catch { fail(error.description) }
        }
        return paths
    }

    /// Label names for a classifier (`class N` for an embedder's nothing) from a `--labels` choice;
    /// a count mismatch is a usage error.
    static func labelNames(_ labels: String?, for model: FERModel) throws -> [String] {
        guard let classes = model.architecture.classCount else { return [] }
        guard let choice = labels else {
            return LabelSet.names(forClasses: classes)
        }
        let names: [String]
        if let set = LabelSet(rawValue: choice.lowercased()) {
            names = set.names
        } else if FileManager.default.fileExists(atPath: choice) {
            guard let text = try? String(contentsOfFile: choice, encoding: .utf8) else {
                throw ValidationError("--labels \(choice): cannot be read as UTF-8 text")
            }
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else {
            throw ValidationError("--labels must be rafdb, affectnet7, affectnet8 or a file of names; '\(choice)' is none of these")
        }
        guard names.count == classes else {
            throw ValidationError("--labels \(choice) has \(names.count) names but the model has \(classes) classes")
        }
        return names
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
