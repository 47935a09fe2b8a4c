import FEREngine
import Foundation
import FERTensor
import XCTest

/// One image shared by a team of threads: every convolution's output is split between them (by
/// rows, output pixels or column panels), each part computed exactly as one thread computes it.
final class ThreadTeamTests: XCTestCase {
    func testEveryModelGivesTheSameFloatsOnOneTwoAndThreeThreads() throws {
        var paths = try Fixtures.checkpoints().filter { $0.form == "lfnsb7-authors" || $0.path.contains("/models/") }.map(\.path)
        paths.append(Fixtures.root.appendingPathComponent("weights/retinaface-mobilenet0.25.pth").path)
        XCTAssertEqual(paths.count, 7)
        var rng = SystemRandomNumberGenerator()
        for path in paths {
            let model = try FERModel(contentsOf: path)
            // The detector at an odd size: parts that are not whole tiles, rows that are not whole images.
            let (height, width) = model.architecture == .retinaFace ? (101, 77) : (112, 112)
            let input = (0..<3 * height * width).map { _ in Float.random(in: -2...2, using: &rng) }
            var first: [String: [Float]]?
            for threads in [1, 2, 3] {
                let session = try model.makeSession(batch: 1, height: height, width: width, threads: threads)
                var results: [String: [Float]] = [:]
                for _ in 0..<2 {  // the second run reuses the started team
                    try input.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 1) }
                    for output in model.graph.outputs { results[output.name] = Array(session.output(output.name)!) }
                }
                XCTAssertFalse(results.isEmpty)
                if let first {
                    XCTAssertEqual(results.keys.sorted(), first.keys.sorted())
                    for (name, values) in results {
                        let differing = zip(values, first[name] ?? []).filter { $0 != $1 }.count
                        XCTAssertEqual(differing, 0, "\(path): output \(name) on \(threads) threads differs from one thread")
                    }
                } else {
                    first = results
                }
            }
        }
    }

    /// A two-thread session shares single images between its threads and splits batches between
    /// its workspaces; alternating the two keeps giving one thread's floats, and the helper
    /// started by the first single image is the one every later single image uses.
    func testASessionAlternatingSingleImagesAndBatchesKeepsOneHelperAndOneThreadsFloats() throws {
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        let input = try Fixtures.input("random-b2").data
        let before = helperThreads()
        let one = model.makeSession(batch: 2, threads: 1), two = model.makeSession(batch: 2, threads: 2)
        var helpers: Set<String>?
        for batch in [1, 2, 1, 2, 1] {
            let images = Array(input[0..<batch * input.count / 2])
            try images.withUnsafeBufferPointer { try one.run(nchw: $0, batch: batch) }
            try images.withUnsafeBufferPointer { try two.run(nchw: $0, batch: batch) }
            XCTAssertEqual(Array(two.outputs), Array(one.outputs), "batch \(batch)")
            let now = helperThreads().subtracting(before)
            XCTAssertEqual(now.count, 1, "helper threads of the session after a batch of \(batch)")
            if helpers == nil { helpers = now }
            XCTAssertEqual(now, helpers, "the helper was replaced after a batch of \(batch)")
        }
    }

    /// Thread ids of this process's team helpers (member 1), from /proc.
    private func helperThreads() -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(tasks.filter {
            (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix("fer-team-1") == true
        })
    }
}
