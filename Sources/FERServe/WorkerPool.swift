import CoreMetrics
import Dispatch
import Foundation

/// Runs classifications on `workers` threads of its own, first come first served. Nothing waits by
/// blocking a thread that serves HTTP: a request suspends on a continuation until a worker thread
/// has run its job, so routes that need no worker (`/healthz`, `/metrics`) answer whatever the
/// workers do. Two timers per job, on a queue of their own:
///
/// - `waitLimit`: a job still queued after this many seconds is removed and fails with
///   ``ServiceError/Kind/workerWaitTimeout(seconds:)`` (503);
/// - `deadline`: a job still running this many seconds after it started fails at once with
///   ``ServiceError/Kind/deadlineExceeded(seconds:during:)`` (504); the work sees it at its next
///   ``WorkerJob/check(_:)`` and stops there (a decode or forward pass in progress is not interrupted).
final class WorkerPool: Sendable {
    private let state: PoolState
    private let timers = DispatchQueue(label: "fer-serve.timers")

    init(workers: Int, metrics: ServiceMetrics? = nil) {
        state = PoolState(metrics: metrics)
        for n in 0..<max(1, workers) {
            let state = self.state
            let thread = Thread { state.workerLoop() }
            thread.name = "fer-serve worker \(n + 1)"
            thread.start()
        }
    }

    /// The worker threads end once the pool is gone (after finishing the job they hold).
    deinit { state.stop() }

    /// Runs `work` on a worker thread and returns its result, or throws 503/504 as described above.
    func run<T: Sendable>(waitLimit: Double, deadline: Double, _ work: @escaping @Sendable (WorkerJob) throws -> T) async throws -> T {
        let job = WorkerJob(deadline: deadline)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            job.body = { [timers] in
                timers.asyncAfter(deadline: .now() + deadline) {
                    if job.finish() {
                        continuation.resume(throwing: ServiceError(.deadlineExceeded(seconds: deadline, during: job.stage)))
                    }
                }
                let result = Result { try work(job) }
                if job.finish() { continuation.resume(with: result) }
            }
            state.enqueue(job)
            timers.asyncAfter(deadline: .now() + waitLimit) { [state] in
                if state.removeIfQueued(job), job.finish() {
                    continuation.resume(throwing: ServiceError(.workerWaitTimeout(seconds: waitLimit)))
                }
            }
        }
    }
}

/// One request's work: queued, then running on a worker, then finished (by its result or a timer;
/// whichever comes first answers the request).
final class WorkerJob: @unchecked Sendable {
    // Safety of @unchecked Sendable: `body` is set before the job is queued and read only by the one
    // worker that dequeues it; `finished` and `stageText` are read and written under `lock`.
    fileprivate var body: () -> Void = {}
    private let lock = NSLock()
    private var finished = false
    private var stageText = "while waiting to start"
    let deadline: Double

    init(deadline: Double) { self.deadline = deadline }

    /// Marks the job finished; true for the one caller that did so first.
    fileprivate func finish() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if finished { return false }
        finished = true
        return true
    }

    /// What the work was doing, for the deadline's message.
    var stage: String {
        lock.lock()
        defer { lock.unlock() }
        return stageText
    }

    /// Called by the work between steps: records what comes next, and throws once the deadline has
    /// answered the request (the result would be thrown away).
    func check(_ next: String) throws {
        lock.lock()
        defer { lock.unlock() }
        if finished { throw ServiceError(.deadlineExceeded(seconds: deadline, during: stageText)) }
        stageText = next
    }
}

/// The queue and the worker threads' loop, apart from ``WorkerPool`` so that the threads do not keep
/// the pool alive.
private final class PoolState: @unchecked Sendable {
    // Safety of @unchecked Sendable: `queue`, `head`, `busy` and `stopped` are read and written under
    // `condition`.
    private let condition = NSCondition()
    private var queue: [WorkerJob?] = []
    private var head = 0
    private var busy = 0
    private var stopped = false
    private let metrics: ServiceMetrics?

    init(metrics: ServiceMetrics?) { self.metrics = metrics }

    func enqueue(_ job: WorkerJob) {
        condition.lock()
        queue.append(job)
        publish()
        condition.signal()
        condition.unlock()
    }

    /// Takes `job` out of the queue if no worker has started it; true if it did.
    func removeIfQueued(_ job: WorkerJob) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let index = queue[head...].firstIndex(where: { $0 === job }) else { return false }
        queue[index] = nil
        publish()
        return true
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    func workerLoop() {
        while let job = next() {
            job.body()
            job.body = {}
            condition.lock()
            busy -= 1
            publish()
            condition.unlock()
        }
    }

    private func next() -> WorkerJob? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            while head < queue.count {
                let job = queue[head]
                queue[head] = nil
                head += 1
                if head > 64, head * 2 > queue.count {  // drop the consumed front now and then
                    queue.removeFirst(head)
                    head = 0
                }
                if let job {
                    busy += 1
                    publish()
                    return job
                }
            }
            if stopped { return nil }
            condition.wait()
        }
    }

    /// Called under `condition`.
    private func publish() {
        guard let metrics else { return }
        metrics.workersBusy.record(busy)
        metrics.queueLength.record(queue[head...].reduce(0) { $0 + ($1 == nil ? 0 : 1) })
    }
}
