import FERRuntime
import Foundation
import XCTest

/// The classifier's session pool: a burst of concurrent callers gets a session each, and only
/// `maxIdleSessions` of them stay allocated afterwards.
final class SessionPoolTests: XCTestCase {
    /// Runs `body` on `count` threads that all start together.
    private func burst(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let start = DispatchSemaphore(value: 0), done = DispatchGroup()
        for t in 0..<count {
            done.enter()
            let thread = Thread {
                start.wait()
                body(t)
                done.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        for _ in 0..<count { start.signal() }
        done.wait()
    }

    private func sample() throws -> Tensor {
        try NPY.read(path: ClassifierTests.root.appendingPathComponent("Tests/Fixtures/inputs/random-b1.npy").path)
    }

    func testThirtyTwoThreadsLeaveAtMostMaxIdleSessions() throws {
        let classifier = try FERClassifier(contentsOf: ClassifierTests.weights, maxBatch: 1, maxIdleSessions: 3)
        let input = try sample()
        let want = try classifier.classify(tensor: input)
        XCTAssertEqual(classifier.idleSessionCount, 1)
        let failures = Counter()
        burst(32) { _ in
            for _ in 0..<2 {
                if (try? classifier.classify(tensor: input)) != want { failures.add() }
            }
        }
        XCTAssertEqual(failures.value, 0, "every thread gets the sequential result")
        XCTAssertGreaterThan(classifier.sessionsCreated, 3, "the threads overlapped (else this test proves nothing)")
        XCTAssertEqual(classifier.idleSessionCount, 3)
        // The pool is reused, not refilled: a sequential call makes no session.
        let made = classifier.sessionsCreated
        _ = try classifier.classify(tensor: input)
        XCTAssertEqual(classifier.sessionsCreated, made)
    }

    func testDefaultBoundAndAnEmptyPool() throws {
        let threads = 1
        XCTAssertEqual(FERClassifier.defaultMaxIdleSessions(threads: threads),
                       max(2, ProcessInfo.processInfo.activeProcessorCount))
        XCTAssertEqual(FERClassifier.defaultMaxIdleSessions(threads: 1_000), 2)
        let model = try FERModel(contentsOf: ClassifierTests.weights)
        XCTAssertEqual(try FERClassifier(model: model).maxIdleSessions, FERClassifier.defaultMaxIdleSessions(threads: 1))
        XCTAssertEqual(try FERClassifier(model: model, threads: 2).maxIdleSessions, FERClassifier.defaultMaxIdleSessions(threads: 2))

        let none = try FERClassifier(model: model, maxBatch: 1, maxIdleSessions: 0)
        let input = try sample()
        _ = try none.classify(tensor: input)
        _ = try none.classify(tensor: input)
        XCTAssertEqual(none.idleSessionCount, 0)
        XCTAssertEqual(none.sessionsCreated, 2, "nothing kept, so each call makes its own")

        let bounded = try FERClassifier(model: model, maxBatch: 1)
        burst(4 * bounded.maxIdleSessions) { _ in _ = try? bounded.classify(tensor: input) }
        XCTAssertLessThanOrEqual(bounded.idleSessionCount, bounded.maxIdleSessions)
        XCTAssertGreaterThan(bounded.idleSessionCount, 0)
    }
}

private final class Counter: @unchecked Sendable {
    private var count = 0
    private let lock = NSLock()
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
