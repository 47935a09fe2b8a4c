import FEREvaluation
import FERRuntime
import Foundation

/// What `fer-infer eval` found, written as a text table, JSON, a TSV of misclassified images and
/// the confusion-matrix picture's title.
struct EvalReport {
    let modelPath: String
    let architecture: String
    let dataset: LabelledDataset
    let classNames: [String]
    let metrics: ClassificationMetrics
    /// Per dataset image: its classification, or nil when it failed (see `failures`).
    let predictions: [Classification?]
    /// Images that could not be read or classified, in dataset order, with the reason.
    let failures: [(index: Int, message: String)]
    /// Evaluated images that were not 112x112 and were resized.
    let resized: Int
    /// Evaluated images that were not 112x112 and were replaced by their largest face (--detect).
    let detected: Int
    /// True with --detect: images that are not 112x112 go through the face detector.
    let detectFaces: Bool
    let seconds: Double
    let batch: Int
    let threads: Int

    var imagesPerSecond: Double { seconds > 0 ? Double(metrics.sampleCount) / seconds : 0 }

    private var datasetDescription: String {
        dataset.layout.title + (dataset.split.map { ", \($0.rawValue) split" } ?? "")
    }

    private var inputsDescription: String {
        let asIs = "\(metrics.sampleCount - resized - detected) used as they are (112x112), "
        if detectFaces {
            return asIs + "\(detected) replaced by their largest face (RetinaFace, aligned to 112x112 on its landmarks)"
        }
        return asIs + "\(resized) resized to 112x112 with PIL's bilinear filter as the authors' evaluation does"
    }

    var plotTitle: String {
        let model = (modelPath as NSString).lastPathComponent
        return String(format: "%@ on %@: accuracy %.2f%%, balanced %.2f%%", model, datasetName,
                      metrics.accuracy * 100, metrics.balancedAccuracy * 100)
    }

    private var datasetName: String {
        var path = dataset.root
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let name = (path as NSString).lastPathComponent
        return name + (dataset.split.map { " (\($0.rawValue))" } ?? "")
    }

    // MARK: Text

    func text() -> String {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        func percent(_ v: Double) -> String { String(format: "%6.2f%%", v * 100) }
        line("Model:       \(modelPath), \(architecture)")
        line("Dataset:     \(dataset.root) (\(datasetDescription)): \(dataset.images.count) images")
        if let first = dataset.duplicates.first {
            let count = dataset.duplicates.count
            line("Duplicates:  \(count) label-file line\(count == 1 ? "" : "s") repeat\(count == 1 ? "s" : "") an earlier line's "
                 + "image and class, skipped (each image is evaluated once; the first: \(first))")
        }
        line("Classes:     dataset label -> model class")
        for entry in dataset.mapping {
            line("             \(entry.datasetLabel) -> \(entry.modelClass) \(entry.modelName)\(entry.rule == "index" ? " (index)" : "")")
        }
        line("Inputs:      \(inputsDescription)")
        line((detectFaces ? "Unreadable or without a face: " : "Unreadable:  ") + "\(failures.count)"
             + (failures.isEmpty ? "" : " (listed on stderr and in --json)"))
        line()
        line("Accuracy           \(percent(metrics.accuracy))  (\(metrics.correct)/\(metrics.sampleCount))")
        line("Balanced accuracy  \(percent(metrics.balancedAccuracy))")
        line("Macro F1           \(percent(metrics.macroF1))")
        line(String(format: "Speed              %.1f images/s (%d images in %.2f s; batch %d, %d thread%@)",
                    imagesPerSecond, metrics.sampleCount, seconds, batch, threads, threads == 1 ? "" : "s"))
        line()
        let nameWidth = max(5, classNames.map(\.count).max() ?? 0)
        func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
        func rightPad(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }
        line(pad("Class", nameWidth) + "  Precision    Recall        F1   Support")
        for scores in metrics.perClass {
            line(pad(classNames[scores.index], nameWidth)
                 + String(format: "  %8.2f%%  %7.2f%%  %7.2f%%  %8d", scores.precision * 100, scores.recall * 100,
                          scores.f1 * 100, scores.support))
        }
        line()
        // Column headers: class names cut to the column width.
        let column = max(7, min(10, (classNames.map(\.count).max() ?? 0) + 1))
        let header = pad("", nameWidth) + classNames.map { rightPad(String($0.prefix(column - 1)), column) }.joined()
        line("Confusion matrix (rows: true class, columns: predicted class), counts")
        line(header)
        for (i, row) in metrics.confusion.counts.enumerated() {
            line(pad(classNames[i], nameWidth) + row.map { rightPad("\($0)", column) }.joined())
        }
        line()
        line("Row-normalised (% of each true class)")
        line(header)
        for (i, row) in metrics.normalizedConfusion.enumerated() {
            line(pad(classNames[i], nameWidth) + row.map { rightPad(String(format: "%.1f", $0 * 100), column) }.joined())
        }
        return out
    }

    // MARK: JSON

    func json() -> [String: Any] {
        var object: [String: Any] = [
            "model": modelPath, "architecture": architecture, "classes": classNames,
            "dataset": ["path": dataset.root, "layout": dataset.layout.rawValue, "split": dataset.split?.rawValue ?? NSNull(),
                        "images": dataset.images.count, "duplicate_lines": dataset.duplicates] as [String: Any],
            "class_mapping": dataset.mapping.map {
                ["dataset_label": $0.datasetLabel, "class": $0.modelClass, "name": $0.modelName, "rule": $0.rule] as [String: Any]
            },
            "evaluated": metrics.sampleCount, "correct": metrics.correct, "resized": resized, "detected": detected,
            "unreadable": failures.map { ["path": dataset.images[$0.index].displayPath, "error": $0.message] },
            "accuracy": metrics.accuracy, "balanced_accuracy": metrics.balancedAccuracy, "macro_f1": metrics.macroF1,
            "per_class": metrics.perClass.map {
                ["class": $0.index, "name": classNames[$0.index], "precision": $0.precision, "recall": $0.recall,
                 "f1": $0.f1, "support": $0.support, "predicted": $0.predicted] as [String: Any]
            },
            "confusion_matrix": metrics.confusion.counts,
            "confusion_matrix_normalized": metrics.normalizedConfusion,
            "seconds": seconds, "images_per_second": imagesPerSecond, "batch": batch, "threads": threads,
        ]
        var perImage: [[String: Any]] = []
        for (i, prediction) in predictions.enumerated() {
            guard let prediction, let index = prediction.index, let probability = prediction.probability else { continue }
            perImage.append(["path": dataset.images[i].displayPath, "label": dataset.images[i].label,
                             "predicted": index, "probability": Double(probability)])
        }
        object["predictions"] = perImage
        return object
    }

    // MARK: Misclassified images

    /// One line per misclassified image: path, true and predicted labels, their probabilities, then
    /// every class's probability; a header line names the columns.
    func errorsTSV() -> String {
        func field(_ s: String) -> String {
            s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
                .replacingOccurrences(of: "\n", with: "\\n")
        }
        var out = (["path", "true_label", "predicted_label", "p_true", "p_predicted"]
                   + classNames.map { "p_" + field($0) }).joined(separator: "\t") + "\n"
        for (i, prediction) in predictions.enumerated() {
            guard let prediction, let predicted = prediction.index else { continue }
            let truth = dataset.images[i].label
            guard predicted != truth else { continue }
            let probabilities = prediction.probabilities
            out += ([field(dataset.images[i].displayPath), field(classNames[truth]), field(classNames[predicted]),
                     String(format: "%.6f", probabilities[truth]), String(format: "%.6f", probabilities[predicted])]
                    + probabilities.map { String(format: "%.6f", $0) }).joined(separator: "\t") + "\n"
        }
        return out
    }
}
