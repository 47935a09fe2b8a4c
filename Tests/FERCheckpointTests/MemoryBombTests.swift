import FERCheckpoint
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files that are small to write and huge to read. Each must list (names, dtypes, shapes) without
/// reading tensor data, and refuse the expensive read with an error naming the tensor or entry,
/// before anything big is allocated.
final class MemoryBombTests: XCTestCase {
    let six: [Float] = [1, 2, 3, 4, 5, 6]

    /// Peak resident size of this process so far, in bytes.
    func peakResident() -> Int {
        var usage = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss * 1024  // KiB on Linux
        #else
        getrusage(RUSAGE_SELF, &usage)
        return usage.ru_maxrss  // bytes on macOS
        #endif
    }

    /// Fails when the peak resident size grew by more than `bound` since `before`. The bombs here
    /// would take 1 GiB or more; everything the tests build themselves stays far under the bound.
    func assertPeakGrowth(since before: Int, below bound: Int = 256 << 20, _ label: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        let growth = peakResident() - before
        XCTAssertLessThan(growth, bound, "\(label): peak resident size grew by \(growth >> 20) MiB", file: file, line: line)
    }

    /// Three uint8 tensors of 2^30 elements, each a zero-stride view of the same 1-byte storage.
    func zeroStridePickle() -> [UInt8] {
        var p = PickleBuilder()
        p.beginStateDict()
        for name in ["a", "b", "c"] {
            p.string(name); p.tensor("ByteStorage", key: "0", numel: 1, size: [1 << 30], stride: [0])
        }
        p.setItems()
        p.stop()
        return p.bytes
    }

    func testZeroStrideViewsAreListedButNotMaterialisedPastTheBudget() throws {
        var unpadded = ZipBuilder.Options(); unpadded.alignment = 1
        let zip = ZipBuilder.checkpoint(pickle: zeroStridePickle(), storages: [("0", [7])], options: unpadded)
        let legacy = legacyFile(object: zeroStridePickle(), storages: [("0", 1, [7])])
        for (label, bytes, entry) in [("zip", zip, "archive/data/0"), ("legacy", legacy, "legacy storage '0'")] {
            XCTAssertLessThan(bytes.count, 1024, label)
            let before = peakResident()
            let c = try Checkpoint.load(bytes: bytes)
            // Listing needs no tensor data.
            XCTAssertEqual(c.tensors.map(\.name), ["a", "b", "c"], label)
            XCTAssertEqual(c.tensors.map(\.shape), [[1 << 30], [1 << 30], [1 << 30]], label)
            XCTAssertEqual(c.tensors.map(\.byteCount), [1 << 30, 1 << 30, 1 << 30], label)
            XCTAssertFalse(c["a"]!.isZeroCopy, label)
            XCTAssertEqual(c.copiedBytes, 0, "\(label): loading reads no tensor data")
            XCTAssertEqual(c.copyBudget, 64 << 20, "\(label): max(64 MiB, 16 x \(bytes.count) bytes)")
            // Reading the values is refused before the gigabyte is allocated.
            for name in ["a", "b", "c"] {
                let e = assertCheckpointError(.limitExceeded, "\(label) \(name)") { try c[name]!.bytes() }
                XCTAssertEqual(e?.key, name, label)
                XCTAssertEqual(e?.entry, entry, label)
                let message = e?.message ?? ""
                for part in ["materialising uint8 [1073741824] stride [0] needs 1073741824 bytes",
                             "copy budget of 67108864 bytes", "16 x the \(bytes.count)-byte file"] {
                    XCTAssertTrue(message.contains(part), "\(label): '\(part)' missing from: \(message)")
                }
            }
            XCTAssertEqual(c.copiedBytes, 0, label)
            assertPeakGrowth(since: before, label)
        }
        // Errors raised after loading still name the file.
        let path = FileManager.default.temporaryDirectory.path + "/zero-stride-\(getpid()).pth"
        try Data(zip).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let e = assertCheckpointError(.limitExceeded, "from a file") { try Checkpoint.load(path: path)["b"]!.bytes() }
        XCTAssertEqual(e?.file, path)
        XCTAssertEqual(e?.key, "b")
    }

    func testExpandedViewsAreGatheredOnceAndChargedTogether() throws {
        // e1, e2: a one-element storage expanded to 2x3 (stride 0, 0); 24 bytes each.
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("e1"); p.tensor(key: "0", numel: 1, size: [2, 3], stride: [0, 0])
        p.string("e2"); p.tensor(key: "0", numel: 1, size: [2, 3], stride: [0, 0])
        p.setItems()
        p.stop()
        let file = ZipBuilder.checkpoint(pickle: p.bytes, storages: [("0", floatBytes([2.5]))])
        let c = try Checkpoint.load(bytes: file)
        XCTAssertEqual(c.copiedBytes, 0)
        XCTAssertEqual(try c["e1"]!.floats(), [Float](repeating: 2.5, count: 6))
        XCTAssertEqual(c.copiedBytes, 24)
        XCTAssertEqual(try c["e1"]!.floats(), [Float](repeating: 2.5, count: 6))
        XCTAssertEqual(c.copiedBytes, 24, "a second read reuses the copy")
        // The budget is for all copies together: 40 bytes hold one of the two.
        var limits = ImportLimits()
        limits.minCopyBudget = 40
        limits.copyBudgetFactor = 0
        let small = try Checkpoint.load(bytes: file, limits: limits)
        XCTAssertEqual(small.copyBudget, 40)
        XCTAssertEqual(try small["e1"]!.floats().count, 6)
        let e = assertCheckpointError(.limitExceeded, "second copy") { try small["e2"]!.floats() }
        XCTAssertEqual(e?.key, "e2")
        XCTAssertTrue(e?.message.contains("with the 24 already allocated") ?? false, e?.message ?? "")
        XCTAssertEqual(small.copiedBytes, 24)
    }

    /// A budget of exactly the bytes a copy needs holds it; one byte less refuses it, naming both numbers.
    func testCopyBudgetAtExactlyTheBytesOfACopy() throws {
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("e"); p.tensor(key: "0", numel: 1, size: [2, 3], stride: [0, 0])  // 6 floats, 24 bytes copied
        p.setItems()
        p.stop()
        let file = ZipBuilder.checkpoint(pickle: p.bytes, storages: [("0", floatBytes([2.5]))])
        var limits = ImportLimits()
        limits.copyBudgetFactor = 0
        limits.minCopyBudget = 24
        let exact = try Checkpoint.load(bytes: file, limits: limits)
        XCTAssertEqual(try exact["e"]!.floats(), [Float](repeating: 2.5, count: 6))
        XCTAssertEqual(exact.copiedBytes, 24)
        limits.minCopyBudget = 23
        let short = try Checkpoint.load(bytes: file, limits: limits)
        let e = assertCheckpointError(.limitExceeded, "one byte short") { try short["e"]!.floats() }
        XCTAssertTrue(e?.message.contains("needs 24 bytes") ?? false, e?.message ?? "")
        XCTAssertTrue(e?.message.contains("copy budget of 23 bytes") ?? false, e?.message ?? "")
    }

    func testCopyBudgetFormula() {
        let limits = ImportLimits()
        XCTAssertEqual(limits.copyBudget(fileSize: 565), 64 << 20)
        XCTAssertEqual(limits.copyBudget(fileSize: 4 << 20), 64 << 20)
        XCTAssertEqual(limits.copyBudget(fileSize: 10 << 20), 160 << 20)
        XCTAssertEqual(limits.copyBudget(fileSize: Int.max / 2), Int.max, "saturates")
    }

    /// A zip checkpoint of about 1 MB: 'w' (six floats) and 'big', 2^28 float32 zeros whose
    /// deflated entry inflates to 1 GiB, declaring `declaredSize` bytes.
    func gigabyteEntryCheckpoint(declaredSize: Int = 1 << 30, bigShape: [Int] = [1 << 28]) -> (file: [UInt8], pickle: [UInt8]) {
        let zeros = deflatedZeros(mebibytes: 1024)
        var p = PickleBuilder()
        p.beginStateDict()
        p.string("w"); p.tensor(key: "0", numel: 6, size: [6])
        p.string("big"); p.tensor(key: "1", numel: bigShape.reduce(1, *), size: bigShape)
        p.setItems()
        p.stop()
        var deflate = ZipBuilder.Options(); deflate.deflate = true
        let member = ZipBuilder.Member(name: "archive/data/1", method: 8, crc: zeros.crc, size: declaredSize, stored: zeros.stored)
        let file = ZipBuilder.checkpoint(pickle: p.bytes, storages: [("0", floatBytes(six))], prepared: [member],
                                         options: deflate)
        return (file, p.bytes)
    }

    func testAnEntryIsInflatedOnlyWhenItsTensorIsRead() throws {
        let (file, pickle) = gigabyteEntryCheckpoint()
        XCTAssertLessThan(file.count, 1_200_000)
        let before = peakResident()
        let c = try Checkpoint.load(bytes: file)
        XCTAssertEqual(c.tensors.map(\.name), ["w", "big"])
        XCTAssertEqual(c["big"]!.byteCount, 1 << 30)
        XCTAssertEqual(c.copiedBytes, pickle.count + "little".count, "only data.pkl and byteorder are inflated at load")
        XCTAssertEqual(try c["w"]!.floats(), six)
        XCTAssertEqual(c.copiedBytes, pickle.count + "little".count + 24, "w's entry, and nothing else")
        // The 1 GiB entry itself is over the budget (16 x ~1 MB): refused before inflating.
        let e = assertCheckpointError(.limitExceeded, "1 GiB entry") { try c["big"]!.floats() }
        XCTAssertEqual(e?.entry, "archive/data/1")
        XCTAssertEqual(e?.key, "big")
        XCTAssertTrue(e?.message.contains("inflating entry 'archive/data/1' needs 1073741824 bytes") ?? false, e?.message ?? "")
        assertPeakGrowth(since: before, "1 GiB entry")
    }

    func testAnEntryNeverInflatesPastItsDeclaredSize() throws {
        // The same 1 GiB stream, declared as 1 MiB, under a tensor of 2^18 floats.
        let (file, pickle) = gigabyteEntryCheckpoint(declaredSize: 1 << 20, bigShape: [1 << 18])
        let before = peakResident()
        let c = try Checkpoint.load(bytes: file)
        let loaded = c.copiedBytes
        XCTAssertEqual(loaded, pickle.count + "little".count)
        for attempt in 1...2 {
            let e = assertCheckpointError(.inflateFailed, "attempt \(attempt)") { try c["big"]!.floats() }
            XCTAssertEqual(e?.entry, "archive/data/1")
            XCTAssertEqual(e?.key, "big")
            XCTAssertTrue(e?.message.contains("inflates to more than the declared 1048576 bytes") ?? false, e?.message ?? "")
            XCTAssertEqual(c.copiedBytes, loaded, "a failed inflate gives its charge back")
        }
        assertPeakGrowth(since: before, "overlong entry")
    }
}
