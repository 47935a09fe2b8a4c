import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-line progress bar on stderr (count, images/s, time left), redrawn in place at most ten
/// times a second. Draws nothing unless enabled (the CLI enables it only when stderr is a terminal).
struct ProgressBar {
    let total: Int
    let enabled: Bool
    private let start = DispatchTime.now().uptimeNanoseconds
    private var lastDraw: UInt64 = 0
    private var drawn = false

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    /// True when stderr is a terminal.
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Shows `done` of ``total`` (always drawn at the end).
    mutating func update(_ done: Int) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard done >= total || now - lastDraw >= 100_000_000 else { return }
        lastDraw = now
        let seconds = Double(now - start) / 1e9
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let left = rate > 0 ? Int((Double(total - done) / rate).rounded()) : 0
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r[%@] %d/%d  %.1f images/s  %d:%02d left ", bar, done, total, rate, left / 60, left % 60)
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Clears the line, so that what follows starts at its beginning.
    mutating func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: 78) + "\r").utf8))
        drawn = false
    }
}
