import Foundation
import Synchronization

/// Work a ``ThreadTeam`` shares: every member calls ``run(member:of:)`` once per task, at the
/// same time, and each does its own part.
protocol TeamTask: AnyObject {
    func run(member: Int, of members: Int)
}

/// Threads that share the steps of one forward pass: the caller is member 0 and `size - 1`
/// helper threads, started once, are the others.
///
/// A pass posts a task every few microseconds, far too often for a dispatch queue or a
/// condition variable (both measured slower than one thread), so helpers spin on an atomic
/// counter between tasks; after ``spinLimit`` idle polls (well past the longest serial stretch
/// of a pass) they sleep on a condition until the next task, so an idle session costs nothing.
final class ThreadTeam: @unchecked Sendable {
    // @unchecked: `task` is written by the caller before a post (a sequentially consistent add)
    // and read by helpers after they see it; the rest are atomics or the condition.
    let size: Int
    /// Tasks posted so far; a helper runs the next task when this passes the count it has seen.
    private let posted = Atomic<Int>(0)
    /// Helpers still running the current task.
    private let running = Atomic<Int>(0)
    /// Helpers asleep on `condition` (or about to be).
    private let sleeping = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let condition = NSCondition()
    private unowned(unsafe) var task: TeamTask?

    /// Polls of `posted` before a helper sleeps: about a millisecond.
    static let spinLimit = 1 << 20
    /// Polls of `running` before the caller starts yielding its core while it waits.
    static let waitPolls = 1 << 14

    /// Starts `size - 1` helper threads.
    init(size: Int) {
        precondition(size >= 2, "a team needs at least two members")
        self.size = size
        for member in 1..<size {
            // Named from inside: on Linux only the running thread's own name reaches the OS (top, gdb).
            Thread { [self] in
                Thread.current.name = "fer-team-\(member)"
                help(as: member)
            }.start()
        }
    }

    /// Runs `task` on every member, this thread as member 0; returns when all have finished.
    func run(_ task: TeamTask) {
        self.task = task
        running.store(size - 1, ordering: .relaxed)
        posted.add(1, ordering: .sequentiallyConsistent)
        wakeSleepers()
        task.run(member: 0, of: size)
        // Helpers finish within microseconds of this thread when they have cores of their own;
        // where they share one with it (more threads than cores), yield it to them.
        var polls = 0
        while running.load(ordering: .acquiring) > 0 {
            polls += 1
            if polls > Self.waitPolls { sched_yield() }
        }
        self.task = nil
    }

    /// Ends the helper threads (each finishes when it next looks at the counter). The team is
    /// unusable afterwards.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        posted.add(1, ordering: .sequentiallyConsistent)
        wakeSleepers()
    }

    private func wakeSleepers() {
        // A helper counts itself asleep before it checks `posted` under the lock, and this load
        // follows the post, so either the helper sees the post or this sees the helper.
        if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    private func help(as member: Int) {
        var seen = 0
        while true {
            var polls = 0
            while posted.load(ordering: .acquiring) == seen {
                polls += 1
                if polls < Self.spinLimit { continue }
                condition.lock()
                sleeping.add(1, ordering: .sequentiallyConsistent)
                while posted.load(ordering: .sequentiallyConsistent) == seen { condition.wait() }
                sleeping.subtract(1, ordering: .sequentiallyConsistent)
                condition.unlock()
            }
            seen = posted.load(ordering: .acquiring)
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            task.unsafelyUnwrapped.run(member: member, of: size)
            running.subtract(1, ordering: .releasing)
        }
    }
}

/// Part `part` of `parts` of `0 ..< total`, cut at multiples of `align` (the last part takes the
/// remainder): the parts are consecutive, disjoint and cover the range.
func share(_ total: Int, part: Int, of parts: Int, align: Int = 1) -> Range<Int> {
    let units = (total + align - 1) / align
    let lower = min(total, units * part / parts * align), upper = min(total, units * (part + 1) / parts * align)
    return lower..<upper
}
