// Times Checkpoint.load on a checkpoint (default: weights/lfnsb7-seeded.pth, the authors' format,
// full size) and reports median and min over N loads, after one untimed warm-up load.
// Each load maps the file, decodes the pickle (optimizer state included), finds the model's
// tensors and materialises them (views into the mapping); the tensors are then touched (first
// and last byte) so that nothing is optimised away.
//
//   swift run -c release --package-path Benchmarks import-benchmark [CHECKPOINT] [--runs N]
import FERCheckpoint
import Foundation

var arguments = Array(CommandLine.arguments.dropFirst())
var runs = 50
if let i = arguments.firstIndex(of: "--runs"), i + 1 < arguments.count, let n = Int(arguments[i + 1]), n > 0 {
    runs = n
    arguments.removeSubrange(i...(i + 1))
}
let here = URL(fileURLWithPath: #filePath)
let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let path = arguments.first ?? root.appendingPathComponent("weights/lfnsb7-seeded.pth").path

func loadOnce() throws -> (Checkpoint, UInt64) {
    let checkpoint = try Checkpoint.load(path: path)
    var touch: UInt64 = 0
    for t in checkpoint.tensors {
        try t.withUnsafeRawBytes { raw in
            if let first = raw.first, let last = raw.last { touch &+= UInt64(first) &+ UInt64(last) }
        }
    }
    return (checkpoint, touch)
}

do {
    let (warm, _) = try loadOnce()
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    var times: [Double] = []
    var sink: UInt64 = 0
    for _ in 0..<runs {
        let start = DispatchTime.now().uptimeNanoseconds
        let (_, touch) = try loadOnce()
        let end = DispatchTime.now().uptimeNanoseconds
        sink &+= touch
        times.append(Double(end - start) / 1e6)
    }
    times.sort()
    let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
    print("checkpoint: \(path) (\(size) bytes, \(warm.container.rawValue), \(warm.structure))")
    print("tensors: \(warm.tensors.count)")
    print(String(format: "import: median %.2f ms, min %.2f ms, max %.2f ms over %d loads", median, times[0], times[times.count - 1], runs))
    print("budget: 30 ms -> \(median < 30 ? "PASS" : "FAIL")")
    if sink == 42 { print("") }
} catch {
    FileHandle.standardError.write(Data("import-benchmark: \(error)\n".utf8))
    exit(1)
}
