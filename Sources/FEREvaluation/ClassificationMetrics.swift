/// Counts of (true class, predicted class) pairs: row = true class, column = predicted class.
public struct ConfusionMatrix: Equatable, Sendable {
    /// Number of classes (rows and columns).
    public let classCount: Int
    /// `counts[t][p]`: samples of true class t predicted as p.
    public private(set) var counts: [[Int]]

    /// An empty matrix for `classCount` classes (at least 1).
    public init(classCount: Int) {
        precondition(classCount >= 1, "a confusion matrix needs at least one class")
        self.classCount = classCount
        counts = Array(repeating: Array(repeating: 0, count: classCount), count: classCount)
    }

    /// The matrix of the pairs (truth[i], predictions[i]); every value must be in 0..<classCount.
    public init(classCount: Int, truth: [Int], predictions: [Int]) {
        precondition(truth.count == predictions.count, "\(truth.count) true labels for \(predictions.count) predictions")
        self.init(classCount: classCount)
        for (t, p) in zip(truth, predictions) { add(truth: t, predicted: p) }
    }

    /// Counts one sample of true class `truth` predicted as `predicted` (both in 0..<classCount).
    public mutating func add(truth: Int, predicted: Int) {
        precondition((0..<classCount).contains(truth) && (0..<classCount).contains(predicted),
                     "class \(truth) or \(predicted) outside 0..<\(classCount)")
        counts[truth][predicted] += 1
    }

    /// Samples counted.
    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }
}

/// Scores of one class.
public struct ClassScores: Equatable, Sendable {
    /// Class index.
    public var index: Int
    /// Correct predictions of this class over all predictions of it (0 when it is never predicted).
    public var precision: Double
    /// Correct predictions of this class over its samples (0 when it has none).
    public var recall: Double
    /// Harmonic mean of precision and recall, 2 tp / (support + predicted) (0 when both are 0).
    public var f1: Double
    /// Samples whose true class this is.
    public var support: Int
    /// Samples predicted as this class.
    public var predicted: Int

    public init(index: Int, precision: Double, recall: Double, f1: Double, support: Int, predicted: Int) {
        self.index = index
        self.precision = precision
        self.recall = recall
        self.f1 = f1
        self.support = support
        self.predicted = predicted
    }
}

/// The numbers a facial-expression paper reports for a test set, computed from a confusion matrix
/// with scikit-learn's conventions, so they equal `accuracy_score`, `balanced_accuracy_score`,
/// `f1_score(average="macro")` and `precision_recall_fscore_support` on the same predictions:
///
/// - accuracy: correct / samples;
/// - balanced accuracy: mean recall over the classes that have samples (what AffectNet results use);
/// - macro F1: mean F1 over the classes that occur as a true or a predicted class;
/// - a ratio with a zero denominator (a class never predicted, or without samples) is 0.
///
/// With no samples at all every score is 0.
public struct ClassificationMetrics: Equatable, Sendable {
    /// The counts the scores come from.
    public let confusion: ConfusionMatrix
    /// Samples evaluated.
    public let sampleCount: Int
    /// Samples predicted correctly.
    public let correct: Int
    /// Top-1 accuracy, correct / samples.
    public let accuracy: Double
    /// Mean recall over classes with at least one sample.
    public let balancedAccuracy: Double
    /// Mean F1 over classes that are the true or predicted class of at least one sample.
    public let macroF1: Double
    /// Per-class scores, in class order (every class, present or not).
    public let perClass: [ClassScores]

    /// The scores of `confusion`.
    public init(confusion: ConfusionMatrix) {
        self.confusion = confusion
        let n = confusion.classCount, counts = confusion.counts
        sampleCount = confusion.total
        correct = (0..<n).reduce(0) { $0 + counts[$1][$1] }
        var perClass: [ClassScores] = []
        for c in 0..<n {
            let tp = counts[c][c]
            let support = counts[c].reduce(0, +)
            let predicted = (0..<n).reduce(0) { $0 + counts[$1][c] }
            perClass.append(ClassScores(
                index: c,
                precision: predicted == 0 ? 0 : Double(tp) / Double(predicted),
                recall: support == 0 ? 0 : Double(tp) / Double(support),
                f1: support + predicted == 0 ? 0 : 2 * Double(tp) / Double(support + predicted),
                support: support, predicted: predicted))
        }
        self.perClass = perClass
        accuracy = sampleCount == 0 ? 0 : Double(correct) / Double(sampleCount)
        let withSamples = perClass.filter { $0.support > 0 }
        balancedAccuracy = withSamples.isEmpty ? 0 : withSamples.reduce(0) { $0 + $1.recall } / Double(withSamples.count)
        let present = perClass.filter { $0.support > 0 || $0.predicted > 0 }
        macroF1 = present.isEmpty ? 0 : present.reduce(0) { $0 + $1.f1 } / Double(present.count)
    }

    /// The scores of the pairs (truth[i], predictions[i]).
    public init(classCount: Int, truth: [Int], predictions: [Int]) {
        self.init(confusion: ConfusionMatrix(classCount: classCount, truth: truth, predictions: predictions))
    }

    /// Each row of the confusion matrix divided by its sum (the class's support), as
    /// `confusion_matrix(normalize="true")` gives it; rows of classes without samples are all 0.
    public var normalizedConfusion: [[Double]] {
        confusion.counts.map { row in
            let total = row.reduce(0, +)
            return row.map { total == 0 ? 0 : Double($0) / Double(total) }
        }
    }
}
