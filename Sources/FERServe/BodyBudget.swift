import Foundation

/// The bytes of request bodies in flight, shared by every request of a service, at most `limit`
/// (`--max-inflight-bytes`). A request reserves its body before reading it (its Content-Length) or as
/// it arrives (a chunked body), and gives the bytes back when it is answered; a reservation that does
/// not fit is refused with ``ServiceError/Kind/inflightBudgetExhausted(needed:inUse:limit:)`` (503).
///
/// When the budget falls idle (nothing held) after holding at least `trimAfter` bytes at once since it
/// was last idle, `onBurstOver` runs on a background queue: the service gives the freed memory back
/// to the system there (``ProcessMemory/returnFreedMemory()``), or a burst of uploads would stay
/// resident.
final class InflightBodyBudget: @unchecked Sendable {
    // Safety of @unchecked Sendable: `used` and `peak` are read and written under `lock`.
    private let lock = NSLock()
    private var used = 0
    /// Most bytes held at once since the budget was last idle.
    private var peak = 0
    /// The budget, in bytes.
    let limit: Int
    private let trimAfter: Int
    private let onBurstOver: (@Sendable () -> Void)?

    init(limit: Int, trimAfter: Int = .max, onBurstOver: (@Sendable () -> Void)? = nil) {
        self.limit = max(0, limit)
        self.trimAfter = trimAfter
        self.onBurstOver = onBurstOver
    }

    /// Bytes reserved now.
    var inUse: Int {
        lock.lock()
        defer { lock.unlock() }
        return used
    }

    /// Takes `bytes` from the budget, or throws (taking nothing) if they do not fit.
    fileprivate func take(_ bytes: Int) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        guard bytes <= limit - used else { throw ServiceError(.inflightBudgetExhausted(needed: bytes, inUse: used, limit: limit)) }
        used += bytes
        peak = max(peak, used)
    }

    fileprivate func give(_ bytes: Int) {
        lock.lock()
        used -= bytes
        let burstOver = used == 0 && peak >= trimAfter
        if used == 0 { peak = 0 }
        lock.unlock()
        if burstOver, let onBurstOver { DispatchQueue.global(qos: .utility).async(execute: onBurstOver) }
    }

    /// A new, empty reservation against this budget.
    func reservation() -> BodyReservation { BodyReservation(budget: self) }
}

/// What one request holds of an ``InflightBodyBudget``: it only grows, until ``release()`` (or the
/// reservation's end) gives it all back.
final class BodyReservation: @unchecked Sendable {
    // Safety of @unchecked Sendable: `held` is read and written under `lock`.
    private let lock = NSLock()
    private let budget: InflightBodyBudget
    private var held = 0

    fileprivate init(budget: InflightBodyBudget) { self.budget = budget }

    deinit { release() }

    /// Bytes held.
    var bytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return held
    }

    /// Makes the reservation at least `total` bytes, or throws 503 (keeping what it held).
    func cover(_ total: Int) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        guard total > held else { return }
        try budget.take(total - held)
        held = total
    }

    /// Gives every byte back; later calls do nothing.
    func release() {
        lock.lock()
        let bytes = held
        held = 0
        lock.unlock()
        if bytes > 0 { budget.give(bytes) }
    }
}
