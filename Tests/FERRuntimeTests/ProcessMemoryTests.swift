import FERRuntime
import Foundation
import XCTest
#if canImport(Glibc)
import CMalloc
import Glibc
#endif

/// `ProcessMemory.keepFreedBuffers()`: a photo-sized buffer, once freed, stays with the process
/// for the next photo instead of going back to the system (and being faulted in again).
final class ProcessMemoryTests: XCTestCase {
    func testFreedPhotoSizedBuffersStayWithTheProcess() throws {
        #if canImport(Glibc)
        let size = 16 << 20  // a 3000x1800 RGB photo: under heapAllocationLimit
        XCTAssertLessThan(size, ProcessMemory.heapAllocationLimit)
        // Earlier tests leave free chunks in the heap, from which malloc would serve the buffer
        // whatever the settings: hold them with 64 KiB blocks first (what stays free is then in
        // pieces too small for the buffer).
        var fillers: [UnsafeMutableRawPointer] = []
        defer { fillers.forEach { free($0) } }
        while mallinfo2().fordblks > 2 << 20 && fillers.count < 8192 { fillers.append(try XCTUnwrap(malloc(64 << 10))) }
        func residentAfterFreeing() throws -> Int {
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            p.initialize(repeating: 1, count: size)
            let touched = try resident()
            p.deallocate()
            return touched - (try resident())
        }
        // glibc's default (fixed here, as earlier tests may have moved its adaptive threshold):
        // the buffer is mapped, and unmapped when freed.
        XCTAssertEqual(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1)
        XCTAssertGreaterThan(try residentAfterFreeing(), size / 2, "by default the freed buffer leaves the process")
        XCTAssertTrue(ProcessMemory.keepFreedBuffers())
        _ = try residentAfterFreeing()  // the heap grows once
        XCTAssertLessThan(try residentAfterFreeing(), size / 8, "the freed buffer went back to the system")
        #else
        throw XCTSkip("glibc only")
        #endif
    }

    /// Resident bytes of this process (`/proc/self/statm`).
    private func resident() throws -> Int {
        let fields = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        return try XCTUnwrap(Int(fields[1])) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
