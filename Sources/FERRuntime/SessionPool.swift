import FEREngine
import Foundation

/// Idle inference sessions of one model, kept between calls so that a call borrows preallocated
/// buffers instead of making them. Sessions are kept per input size (the detector sees many); at
/// most `maxIdle` are kept in all, the oldest freed first. Thread-safe.
final class SessionPool: @unchecked Sendable {
    // Safety of @unchecked Sendable: `idle` and `created` are only touched under `lock`.
    let model: FERModel
    let batch: Int
    let threads: Int
    let maxIdle: Int
    private let lock = NSLock()
    private var idle: [InferenceSession] = []  // oldest first
    private var created = 0

    init(model: FERModel, batch: Int, threads: Int, maxIdle: Int) {
        self.model = model
        self.batch = batch
        self.threads = threads
        self.maxIdle = maxIdle
    }

    var idleCount: Int { lock.withLock { idle.count } }
    var createdCount: Int { lock.withLock { created } }

    /// Runs `body` with a session for `height` x `width` inputs (the model's own size when nil),
    /// then keeps it for the next call if the pool has room.
    func withSession<T>(height: Int? = nil, width: Int? = nil, _ body: (InferenceSession) throws -> T) throws -> T {
        let size = (height ?? model.inputSize.height, width ?? model.inputSize.width)
        let found: InferenceSession? = lock.withLock {
            guard let i = idle.lastIndex(where: { $0.inputSize == size }) else { created += 1; return nil }
            return idle.remove(at: i)
        }
        let session = try found ?? model.makeSession(batch: batch, height: size.0, width: size.1, threads: threads)
        defer {
            lock.withLock {
                idle.append(session)
                if idle.count > maxIdle { idle.removeFirst(idle.count - maxIdle) }
            }
        }
        return try body(session)
    }
}
