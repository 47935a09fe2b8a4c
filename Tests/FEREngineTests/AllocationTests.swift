import CAllocationCounter
import FEREngine
import FERKernels
import FERTensor
import XCTest

final class AllocationTests: XCTestCase {
    /// Two images on one thread, and one image shared by a team of two threads (started by the
    /// warm-up run).
    func testSteadyStateInferenceAllocatesNothing() throws {
        BLASThreads.set(1)
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        var expected: [Float] = []
        for (batch, threads) in [(2, 1), (1, 2)] {
            let input = try Fixtures.input("random-b\(batch)")
            let session = model.makeSession(batch: batch, threads: threads)
            try input.data.withUnsafeBufferPointer { try session.run(nchw: $0, batch: batch) }  // warm-up
            expected = Array(session.outputs)

            fer_allocation_counting_start()
            for _ in 0..<3 {
                try input.data.withUnsafeBufferPointer { try session.run(nchw: $0, batch: batch) }
            }
            let allocations = fer_allocation_counting_stop()
            XCTAssertEqual(allocations, 0, "heap allocations during 3 steady-state forward passes of \(batch) on \(threads) threads")
            XCTAssertEqual(Array(session.outputs), expected)
        }

        // The counter does see allocations, so zero above means something.
        fer_allocation_counting_start()
        let buffer = [Float](repeating: 1, count: 4096 + Int(expected[0].magnitude))
        let seen = fer_allocation_counting_stop()
        XCTAssertGreaterThan(seen, 0)
        XCTAssertEqual(buffer.first, 1)
    }
}
