import FEREvaluation
import XCTest

final class MetricsTests: XCTestCase {
    /// scikit-learn's numbers agree to the last bits or so (it sums in another order).
    private let tolerance = 1e-12

    func testEveryMetricEqualsScikitLearnOnTheFixturePredictions() throws {
        let (classes, cases) = try EvalFixtures.cases()
        for c in cases {
            let m = ClassificationMetrics(classCount: classes.count, truth: c.images.map(\.label),
                                          predictions: c.images.map(\.predicted))
            XCTAssertEqual(m.sampleCount, c.images.count, c.name)
            XCTAssertEqual(m.accuracy, c.metrics.accuracy, accuracy: tolerance, c.name)
            XCTAssertEqual(m.balancedAccuracy, c.metrics.balancedAccuracy, accuracy: tolerance, c.name)
            XCTAssertEqual(m.macroF1, c.metrics.macroF1, accuracy: tolerance, c.name)
            XCTAssertEqual(m.confusion.counts, c.metrics.confusion, c.name)
            XCTAssertEqual(m.perClass.map(\.support), c.metrics.support, c.name)
            for k in 0..<classes.count {
                XCTAssertEqual(m.perClass[k].precision, c.metrics.precision[k], accuracy: tolerance, "\(c.name) precision \(k)")
                XCTAssertEqual(m.perClass[k].recall, c.metrics.recall[k], accuracy: tolerance, "\(c.name) recall \(k)")
                XCTAssertEqual(m.perClass[k].f1, c.metrics.f1[k], accuracy: tolerance, "\(c.name) f1 \(k)")
                for p in 0..<classes.count {
                    XCTAssertEqual(m.normalizedConfusion[k][p], c.metrics.normalized[k][p], accuracy: tolerance, c.name)
                }
            }
            // The fixtures are meant to be neither perfect nor trivial.
            XCTAssertLessThan(m.accuracy, 1, c.name)
            XCTAssertGreaterThan(m.accuracy, 0.5, c.name)
        }
    }

    func testZeroDenominatorsFollowScikitLearn() {
        // 4 classes: class 2 is predicted but never true, class 3 neither true nor predicted.
        //   sklearn: accuracy 3/5; balanced = mean(recall of 0, 1) = (2/3 + 1/2) / 2;
        //   macro F1 over {0, 1, 2}: f1_0 = 2*2/(3+2), f1_1 = 2*1/(2+2), f1_2 = 0.
        let m = ClassificationMetrics(classCount: 4, truth: [0, 0, 0, 1, 1], predictions: [0, 0, 1, 1, 2])
        XCTAssertEqual(m.correct, 3)
        XCTAssertEqual(m.accuracy, 0.6, accuracy: tolerance)
        XCTAssertEqual(m.balancedAccuracy, (2.0 / 3 + 0.5) / 2, accuracy: tolerance)
        XCTAssertEqual(m.macroF1, (0.8 + 0.5 + 0) / 3, accuracy: tolerance)
        XCTAssertEqual(m.perClass[2], ClassScores(index: 2, precision: 0, recall: 0, f1: 0, support: 0, predicted: 1))
        XCTAssertEqual(m.perClass[3], ClassScores(index: 3, precision: 0, recall: 0, f1: 0, support: 0, predicted: 0))
        XCTAssertEqual(m.perClass[0].precision, 1, accuracy: tolerance)
        XCTAssertEqual(m.perClass[1].precision, 0.5, accuracy: tolerance)
        XCTAssertEqual(m.perClass[1].recall, 0.5, accuracy: tolerance)
        XCTAssertEqual(m.normalizedConfusion[0], [2.0 / 3, 1.0 / 3, 0, 0])
        XCTAssertEqual(m.normalizedConfusion[3], [0, 0, 0, 0], "a class without samples has a zero row")
    }

    func testPerfectAndEmpty() {
        let perfect = ClassificationMetrics(classCount: 3, truth: [2, 0, 2], predictions: [2, 0, 2])
        XCTAssertEqual(perfect.accuracy, 1)
        XCTAssertEqual(perfect.balancedAccuracy, 1)
        XCTAssertEqual(perfect.macroF1, 1, "class 1 occurs nowhere and is not averaged")
        let empty = ClassificationMetrics(confusion: ConfusionMatrix(classCount: 3))
        XCTAssertEqual(empty.sampleCount, 0)
        XCTAssertEqual(empty.accuracy, 0)
        XCTAssertEqual(empty.balancedAccuracy, 0)
        XCTAssertEqual(empty.macroF1, 0)
    }

    func testConfusionMatrixCountsRowsAsTruth() {
        var matrix = ConfusionMatrix(classCount: 2)
        matrix.add(truth: 0, predicted: 1)
        matrix.add(truth: 0, predicted: 1)
        matrix.add(truth: 1, predicted: 1)
        XCTAssertEqual(matrix.counts, [[0, 2], [0, 1]])
        XCTAssertEqual(matrix.total, 3)
        XCTAssertEqual(ConfusionMatrix(classCount: 2, truth: [0, 0, 1], predictions: [1, 1, 1]), matrix)
    }
}
