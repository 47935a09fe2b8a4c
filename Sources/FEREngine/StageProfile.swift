import Dispatch

/// Wall-clock time per stage and operation, accumulated over forward passes
/// (`fer-infer bench --profile`). Attach one to a session with ``InferenceSession/profile``.
public final class StageProfile: @unchecked Sendable {
    /// One row: the stage (PyTorch module name), the operation, total time and call count.
    public struct Entry: Sendable {
        public let stage: String
        public let operation: String
        public let nanoseconds: UInt64
        public let calls: Int
    }

    private var order: [String] = []
    private var totals: [String: (stage: String, operation: String, ns: UInt64, calls: Int)] = [:]
    private var last: UInt64 = 0

    public init() {}

    /// Entries in first-seen (forward) order.
    public var entries: [Entry] {
        order.map { key in
            let t = totals[key]!
            return Entry(stage: t.stage, operation: t.operation, nanoseconds: t.ns, calls: t.calls)
        }
    }

    /// Forgets everything recorded so far.
    public func reset() {
        order.removeAll()
        totals.removeAll()
    }

    func start() { last = DispatchTime.now().uptimeNanoseconds }

    /// Charges the time since the previous mark to `operation` of `stage`.
    func mark(_ stage: String, _ operation: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        let key = stage + "\u{1}" + operation
        if let t = totals[key] {
            totals[key] = (stage, operation, t.ns + (now - last), t.calls + 1)
        } else {
            order.append(key)
            totals[key] = (stage, operation, now - last, 1)
        }
        last = now
    }
}
