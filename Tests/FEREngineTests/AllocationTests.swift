import CAllocationCounter
import FEREngine
import FERKernels
import FERTensor
import XCTest

final class AllocationTests: XCTestCase {
    func testSteadyStateInferenceAllocatesNothing() throws {
        BLASThreads.set(1)
        let model = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path)
        let input = try Fixtures.input("random-b2")
        let session = model.makeSession(batch: 2)
        try input.data.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 2) }  // warm-up
        let expected = Array(session.outputs)

        fer_allocation_counting_start()
        for _ in 0..<3 {
            try input.data.withUnsafeBufferPointer { try session.run(nchw: $0, batch: 2) }
        }
        let allocations = fer_allocation_counting_stop()
        XCTAssertEqual(allocations, 0, "heap allocations during 3 steady-state forward passes")
        XCTAssertEqual(Array(session.outputs), expected)

        // The counter does see allocations, so zero above means something.
        fer_allocation_counting_start()
        let buffer = [Float](repeating: 1, count: 4096 + Int(expected[0].magnitude))
        let seen = fer_allocation_counting_stop()
        XCTAssertGreaterThan(seen, 0)
        XCTAssertEqual(buffer.first, 1)
    }
}
