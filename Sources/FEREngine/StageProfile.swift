import Dispatch

/// Wall-clock time per stage and operation, accumulated over forward passes
/// (`fer-infer bench --profile`), with the multiply-accumulates each did. Attach one to a session
/// with ``InferenceSession/profile``.
public final class StageProfile: @unchecked Sendable {
    /// One row: the stage (PyTorch module name), the operation, total time, passes and the
    /// multiply-accumulates of all those passes (convolutions, linear layers, attention products).
    public struct Entry: Sendable {
        public let stage: String
        public let operation: String
        public let nanoseconds: UInt64
        public let calls: Int
        /// The model's multiply-accumulates (as fvcore counts them: a convolution's are its direct sum's).
        public let multiplyAccumulates: Int
        /// The multiply-accumulates the kernels did: fewer where a convolution ran Winograd's
        /// products (36 per 4x4 output tile against 144), the same elsewhere.
        public let executedMultiplyAccumulates: Int

        /// Achieved arithmetic rate: two flops per executed multiply-accumulate, per second of this
        /// row's time.
        public var gigaflopsPerSecond: Double {
            Self.gigaflopsPerSecond(multiplyAccumulates: executedMultiplyAccumulates, nanoseconds: nanoseconds)
        }

        /// Two flops per multiply-accumulate over the time they took (rows added together).
        public static func gigaflopsPerSecond(multiplyAccumulates: Int, nanoseconds: UInt64) -> Double {
            nanoseconds == 0 ? 0 : 2 * Double(multiplyAccumulates) / Double(nanoseconds)
        }
    }

    /// The plan being recorded, and per step of it: its row label, then the totals.
    private var plan: ExecutionPlan?
    private var labels: [(stage: String, operation: String, macsPerImage: Int, executedPerImage: Int)] = []
    private var nanoseconds: [UInt64] = []
    private var calls: [Int] = []
    private var macs: [Int] = [], executed: [Int] = []
    private var last: UInt64 = 0
    /// Time spent reading the next step's weights into the cache (``ExecutionPlan/Step/touchWeights()``), and the passes.
    private var aheadNanoseconds: UInt64 = 0, aheadPasses = 0
    /// The operation of the row that holds the time spent reading weights ahead.
    public static let readAhead = "weights read into the cache ahead"

    public init() {}

    /// Rows in forward order, steps with the same stage and operation added together.
    public var entries: [Entry] {
        var order: [String] = []
        var rows: [String: Entry] = [:]
        for (i, label) in labels.enumerated() where calls[i] > 0 {
            let key = label.stage + "\u{1}" + label.operation
            let before = rows[key]
            if before == nil { order.append(key) }
            rows[key] = Entry(stage: label.stage, operation: label.operation, nanoseconds: (before?.nanoseconds ?? 0) + nanoseconds[i],
                              calls: max(before?.calls ?? 0, calls[i]), multiplyAccumulates: (before?.multiplyAccumulates ?? 0) + macs[i],
                              executedMultiplyAccumulates: (before?.executedMultiplyAccumulates ?? 0) + executed[i])
        }
        let ahead = aheadNanoseconds > 0 ? [Entry(stage: "every step", operation: Self.readAhead, nanoseconds: aheadNanoseconds,
                                                  calls: aheadPasses, multiplyAccumulates: 0, executedMultiplyAccumulates: 0)] : []
        return order.map { rows[$0]! } + ahead
    }

    /// Forgets everything recorded so far.
    public func reset() {
        plan = nil
        labels.removeAll()
        nanoseconds.removeAll()
        calls.removeAll()
        macs.removeAll()
        executed.removeAll()
        aheadNanoseconds = 0
        aheadPasses = 0
    }

    /// Starts a pass of `plan` (a different plan than the last starts the record afresh).
    func start(_ plan: ExecutionPlan) {
        if self.plan !== plan {
            self.plan = plan
            labels = plan.steps.map { ($0.stage, $0.label, plan.multiplyAccumulates($0), plan.executedMultiplyAccumulates($0)) }
            nanoseconds = Array(repeating: 0, count: labels.count)
            calls = Array(repeating: 0, count: labels.count)
            macs = Array(repeating: 0, count: labels.count)
            executed = macs
            aheadNanoseconds = 0
            aheadPasses = 0
        }
        aheadPasses += 1
        last = DispatchTime.now().uptimeNanoseconds
    }

    /// Charges the time since the previous mark to reading weights ahead.
    func markReadAhead() {
        let now = DispatchTime.now().uptimeNanoseconds
        aheadNanoseconds += now - last
        last = now
    }

    /// Charges the time since the previous mark to step `index`, which ran `images` images.
    func mark(_ index: Int, images: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        nanoseconds[index] += now - last
        calls[index] += 1
        macs[index] += labels[index].macsPerImage * images
        executed[index] += labels[index].executedPerImage * images
        last = now
    }
}
