// Loads the model once, then classifies every image named on the command line from a pool of
// threads sharing that one classifier.
import Dispatch
import FERRuntime
import Foundation

let paths = Array(CommandLine.arguments.dropFirst())
guard !paths.isEmpty else {
    FileHandle.standardError.write(Data("usage: classify-example IMAGE...\n".utf8))
    exit(2)
}
do {
    let classifier = try FERClassifier(contentsOf: try DefaultModel.resolve(nil))
    let lines = Lines(count: paths.count)
    DispatchQueue.concurrentPerform(iterations: paths.count) { i in
        do {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: paths[i])))
            let result = try classifier.classify(encoded: bytes)
            lines.set(i, "\(paths[i]): \(result.label ?? "embedding") \(String(format: "%.3f", result.probability ?? 0))")
        } catch {
            lines.set(i, "\(paths[i]): error: \(error)")
        }
    }
    for line in lines.all { print(line) }
} catch {
    FileHandle.standardError.write(Data("classify-example: \(error)\n".utf8))
    exit(1)
}

/// Output lines filled from several threads, printed in input order.
final class Lines: @unchecked Sendable {
    private var lines: [String]
    private let lock = NSLock()
    init(count: Int) { lines = Array(repeating: "", count: count) }
    func set(_ i: Int, _ line: String) { lock.lock(); lines[i] = line; lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
