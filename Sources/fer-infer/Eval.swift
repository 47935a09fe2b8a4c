import ArgumentParser
import Dispatch
import FEREvaluation
import FERImage
import FERRuntime
import FERTensor
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a classifier on a labelled test set, as papers report it.",
        discussion: """
            Reads a labelled dataset, classifies every image and reports top-1 accuracy, balanced accuracy \
            (mean per-class recall, as AffectNet results use), macro F1, per-class precision, recall and \
            support, the confusion matrix (counts and row-normalised) and images/s. The metrics follow \
            scikit-learn's definitions (a ratio with a zero denominator is 0; macro F1 averages the classes \
            that occur as a true or a predicted class).

            Layouts (detected; --layout to choose):
              rafdb    RAF-DB basic: EmoLabel/list_patition_label.txt (lines 'test_0001.jpg 5', labels \
            1..7 in RAF-DB order) and Image/aligned/test_0001_aligned.jpg; --split test|train
              folders  one folder of images per class (AffectNet exports, torchvision ImageFolder); \
            folder names are class indices (0-based) or class names
              list     a CSV or TSV file of 'path,label' lines (optional header 'path,label'), label as \
            index or name, paths relative to the file

            Names match the model's class names (--labels) in any case, with happy, sad, angry, surprised, \
            fearful and disgusted taken for Happiness, Sadness, Anger, Surprise, Fear and Disgust; the \
            mapping is printed. A label that maps to no class is an error naming the file and line, never \
            a guess.

            Images of 112x112 are used as they are; others are resized to 112x112 with PIL's bilinear \
            filter, as the authors' evaluation does, or, with --detect, replaced by their largest face: \
            RetinaFace (--detector) on the image shrunk to --detect-size, the face aligned to 112x112 on its \
            five landmarks as the LFNSB authors did (the report says how many of each). Unreadable images, \
            and with --detect images without a face, are listed on stderr and counted in the report; \
            --strict makes the first one fatal. A progress bar shows on stderr when it is a terminal \
            (never with --json).

            Exit status: 0 report written (unreadable images included, counted), 1 the model, the dataset \
            or an output file failed (one line on stderr), or --strict met an unreadable image, 2 usage errors.

            Examples:
              fer-infer eval --model lfnsb-rafdb.pth --plot confusion.png RAF-DB/basic
              fer-infer eval --model lfnsb-affectnet8.pth --labels affectnet8 --json AffectNet/val > report.json
              fer-infer eval --errors wrong.tsv --batch 64 --threads 2 test.csv
            """)

    @Argument(help: "The dataset: a RAF-DB basic folder, a folder of class folders, or a CSV/TSV list.")
    var dataset: String

    @Option(help: "Model file: a PyTorch checkpoint (.pth/.pt) or a fused .safetensors. Default: \(ModelLocator.defaultName).")
    var model: String?

    @Option(help: "The model's class names: rafdb, affectnet7, affectnet8, or a text file with one name per line. Default: rafdb for 7 classes, affectnet8 for 8.")
    var labels: String?

    @Option(help: "Dataset layout: rafdb, folders or list. Default: a file is a list, a folder with EmoLabel/ or Image/aligned/ is RAF-DB, any other folder holds class folders.")
    var layout: String?

    @Option(help: "RAF-DB split: test or train.")
    var split = "test"

    @Flag(help: "Print the report as JSON (per-image predictions included).")
    var json = false

    @Option(help: "Draw the row-normalised confusion matrix into this file (.png or .svg).")
    var plot: String?

    @Option(help: "Write the misclassified images (true and predicted labels, probabilities) to this TSV file.")
    var errors: String?

    @Flag(help: "Images that are not 112x112: classify their largest face (found by RetinaFace, aligned on its landmarks) instead of resizing the whole image.")
    var detect = false

    @Option(help: "Face detector for --detect (RetinaFace checkpoint). Default: \(DefaultModel.detectorRelativePath).")
    var detector: String?

    @Option(name: .customLong("detect-size"), help: "Long side of the detector input (--detect); larger images are shrunk to it, never enlarged.")
    var detectSize = FaceDetectionOptions().detectSize

    @Option(name: .customLong("detect-threshold"), help: "Minimum face score (--detect), in [0, 1).")
    var detectThreshold = FaceDetectionOptions().threshold

    @Flag(help: "Stop at the first unreadable image (exit status 1) instead of counting it.")
    var strict = false

    @Option(help: "Threads for the runtime (BLAS included).")
    var threads = 1

    @Option(help: "Images per forward pass.")
    var batch = 32

    @Option(name: .customLong("decode-threads"), help: "Threads decoding images (ahead of inference).")
    var decodeThreads = 1

    @Flag(name: .customLong("no-overlap"), help: "Decode each batch just before classifying it, instead of on another thread while the previous batch is classified.")
    var noOverlap = false

    @Option(name: .customLong("max-pixels"), help: "Refuse images with more pixels than this (decompression bombs); 0 for no limit.")
    var maxPixels = ImageDecodingOptions.pilMaxImagePixels

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard decodeThreads >= 1 else { throw ValidationError("--decode-threads must be at least 1") }
        guard maxPixels >= 0 else { throw ValidationError("--max-pixels must be 0 (no limit) or positive") }
        if let layout, DatasetLayout(rawValue: layout) == nil {
            throw ValidationError("--layout must be rafdb, folders or list; '\(layout)' is none of these")
        }
        guard RAFDBSplit(rawValue: split) != nil else {
            throw ValidationError("--split must be test or train; '\(split)' is neither")
        }
        guard (16...FaceDetectionOptions.maxDetectSize).contains(detectSize) else {
            throw ValidationError("--detect-size must be in 16...\(FaceDetectionOptions.maxDetectSize) (the detector needs about 47 bytes per pixel of its input)")
        }
        guard detectThreshold.isFinite, detectThreshold >= 0, detectThreshold < 1 else {
            throw ValidationError("--detect-threshold must be in [0, 1)")
        }
        if !detect, detector != nil { throw ValidationError("--detector is for --detect") }
        if let plot, !([".png", ".svg"].contains { plot.lowercased().hasSuffix($0) }) {
            throw ValidationError("--plot \(plot): the picture must be a .png or .svg file")
        }
        if let plot { try OutputFile.checkWritable(plot, option: "--plot") }
        if let errors { try OutputFile.checkWritable(errors, option: "--errors") }
        if let plot, plot == errors { throw ValidationError("--plot and --errors name the same file, \(plot)") }
    }

    func run() throws {
        let modelPath = try ModelLocator.resolve(model)
        let model: FERModel
        do { model = try FERModel(contentsOf: modelPath) } catch {
            throw CLIError("\(modelPath): \(error)")
        }
        guard let classCount = model.architecture.classCount else {
            throw CLIError("\(modelPath): \(model.architecture.description) gives no class scores; eval needs a classifier")
        }
        let names = try Classify.labelNames(labels, for: model)
        let data: LabelledDataset
        do {
            data = try LabelledDataset.load(dataset, classNames: names, layout: layout.flatMap(DatasetLayout.init),
                                            split: RAFDBSplit(rawValue: split)!)
        } catch {
            throw CLIError(error.description)
        }
        let classifier = try FERClassifier(model: model, labels: names, maxBatch: batch, threads: threads)
        var analyzer: FaceAnalyzer?
        if detect {
            let path: String
            do { path = try DefaultModel.resolveDetector(detector) } catch { throw CLIError("\(error)") }
            do {
                analyzer = try FaceAnalyzer(
                    detector: try FERModel(contentsOf: path), classifier: classifier,
                    options: FaceDetectionOptions(detectSize: detectSize, threshold: detectThreshold), threads: threads)
            } catch { throw CLIError("\(path): \(error)") }
            ProcessMemory.keepFreedBuffers()  // photo after photo: reuse their buffers
        }
        let pipeline = EvalPipeline(images: data.images, batchSize: batch, decodeThreads: decodeThreads,
                                    options: ImageDecodingOptions(maxPixels: maxPixels == 0 ? nil : maxPixels),
                                    analyzer: analyzer)

        var progress = ProgressBar(total: data.images.count, enabled: !json && ProgressBar.stderrIsTerminal)
        var predictions = [Classification?](repeating: nil, count: data.images.count)
        var failures: [(index: Int, message: String)] = []
        var resized = 0, detected = 0, done = 0
        func warn(_ message: String) {
            progress.finish()
            FileHandle.standardError.write(Data("fer-infer: \(message)\n".utf8))
        }
        let start = DispatchTime.now().uptimeNanoseconds
        try pipeline.run(overlap: !noOverlap) { decoded in
            for note in decoded.notes { warn(note) }
            for (index, message) in decoded.failures {
                if strict { throw CLIError("\(message) (--strict)") }
                failures.append((index, message))
                warn(message)
            }
            resized += decoded.resized
            detected += decoded.detected
            if !decoded.indices.isEmpty {
                let input = Tensor(shape: [decoded.indices.count] + ModelInput.channelsLastShape, data: decoded.input)
                for (index, outcome) in zip(decoded.indices, try classifier.classifyEach(channelsLast: input)) {
                    switch outcome {
                    case .success(let result): predictions[index] = result
                    case .failure(let error):
                        let message = "\(data.images[index].displayPath): \(error.problem)"
                        if strict { throw CLIError("\(message) (--strict)") }
                        failures.append((index, message))
                        warn(message)
                    }
                }
            }
            done += decoded.indices.count + decoded.failures.count
            progress.update(done)
        }
        progress.finish()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        failures.sort { $0.index < $1.index }

        let evaluated = predictions.indices.filter { predictions[$0] != nil }
        guard !evaluated.isEmpty else {
            throw CLIError("\(dataset): none of its \(data.images.count) images could be classified")
        }
        let metrics = ClassificationMetrics(classCount: classCount, truth: evaluated.map { data.images[$0].label },
                                            predictions: evaluated.map { predictions[$0]!.index! })
        let report = EvalReport(
            modelPath: modelPath, architecture: model.architecture.description, dataset: data, classNames: names,
            metrics: metrics, predictions: predictions, failures: failures, resized: resized, detected: detected,
            detectFaces: detect, seconds: seconds,
            batch: batch, threads: threads)

        // The report comes first: a file that cannot be written (checked before the run, but the disk can
        // fill or the folder go) costs only that file.
        if json {
            let data: Data
            do { data = try JSONSerialization.data(withJSONObject: report.json(), options: [.prettyPrinted, .sortedKeys]) } catch {
                throw CLIError("cannot write the report as JSON: \(error)")
            }
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(report.text(), terminator: "")
        }
        var unwritten: [String] = []
        if let errors {
            do { try FileNames.write(Array(report.errorsTSV().utf8), to: FileNames.commandLineBytes(for: [errors])[0]) } catch {
                unwritten.append("--errors \(error) (the misclassified images)")
            }
        }
        if let plot {
            do { try ConfusionPlot.write(to: plot, metrics: metrics, classNames: names, title: report.plotTitle) } catch {
                unwritten.append("--plot \(plot): cannot draw the confusion matrix: \(error)")
            }
        }
        if !unwritten.isEmpty {
            throw CLIError(unwritten.joined(separator: "\nfer-infer: ") + " (the report above is complete)")
        }
    }
}
