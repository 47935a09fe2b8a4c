import FERKernels
import Foundation
import XCTest

/// The packed micro-kernel must agree with the plain loop at odd sizes: row counts around the
/// 6-row tile (tails of 1 to 7 rows, a last row block joined to the one before), column counts around the 16-column panel (partial last
/// panels), inner sizes from 1 up, row strides wider than the rows, and every epilogue.
final class PackedGEMMTests: XCTestCase {
    func testPackedKernelMatchesReferenceAtOddSizesForEveryEpilogue() {
        var rng = SeededGenerator(seed: 21)
        let epilogues: [PackedEpilogue] = [.identity, .relu, .leakyRelu(0.1), .prelu]
        // Around both tiles: 6x16 (8-float) and 12x32 (AVX-512, with a 12x16 tile for an odd last panel).
        let shapes = [(1, 1, 1), (5, 7, 3), (6, 16, 8), (7, 17, 13), (13, 33, 64), (50, 24, 129), (97, 48, 40), (2, 5, 300),
                      (49, 20, 256), (11, 64, 17), (12, 32, 5), (25, 80, 33), (131, 50, 7), (200, 96, 130)]
        for kernel in MicroKernel.available {
        for (m, n, k) in shapes {
            let (lda, ldb, ldc) = (k + 3, n + 1, n + 2)
            let a = (0..<m * lda).map { _ in rng.nextFloat() }
            let b = (0..<k * ldb).map { _ in rng.nextFloat() }
            let bias = (0..<n).map { _ in rng.nextFloat() }
            let slopes = (0..<n).map { _ in 0.05 + abs(rng.nextFloat()) * 0.2 }
            let c0 = (0..<m * ldc).map { _ in rng.nextFloat() }
            for withBias in [false, true] {
                let packed = bias.withUnsafeBufferPointer { bi in
                    slopes.withUnsafeBufferPointer { s in
                        PackedWeights(b: b, k: k, n: n, ldb: ldb, bias: withBias ? bi.baseAddress : nil, slopes: s.baseAddress)
                    }
                }
                for epilogue in epilogues {
                    for accumulate in [false, true] {
                        var fast = c0, slow = c0
                        PackedGEMM.multiply(m: m, a: a, lda: lda, b: packed, c: &fast, ldc: ldc, accumulate: accumulate, epilogue: epilogue,
                                            kernel: kernel)
                        PackedGEMM.multiplyReference(
                            m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: withBias ? bias : nil, slopes: slopes,
                            c: &slow, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
                        var worst: Float = 0
                        for i in 0..<fast.count { worst = max(worst, abs(fast[i] - slow[i])) }
                        XCTAssertLessThan(worst, 1e-4, "\(kernel) m\(m) n\(n) k\(k) bias \(withBias) \(epilogue) acc \(accumulate)")
                        // Columns between n and the row stride are left as they were.
                        for i in 0..<m { for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j]) } }
                    }
                }
            }
        }
        }
    }

    func testTouchReadsOneFloatOfEveryCacheLine() {
        // Every packed float 1 (32 columns: no padding; bias and slopes 1): the sum counts the lines read.
        let (k, n) = (37, 32)
        let ones = [Float](repeating: 1, count: k * n)
        let packed = PackedWeights(b: ones, k: k, n: n, ldb: n, bias: ones, slopes: ones)
        XCTAssertEqual(packed.byteCount, (k * n + 2 * n) * 4)
        XCTAssertEqual(packed.touch(), Float((packed.byteCount + 63) / 64))
    }

    func testEveryKernelGivesTheSameFloats() {
        // The tiles sum the same products in the same order: a model's outputs do not depend on the CPU.
        // Widths whose last panel has 8 or fewer columns (4, 20: RetinaFace's heads; 72) run the
        // 8-float narrow tiles for it on every kernel.
        var rng = SeededGenerator(seed: 23)
        for n in [72, 4, 20, 29] {
        let (m, k) = (77, 45)
        let a = (0..<m * k).map { _ in rng.nextFloat() }
        let b = (0..<k * n).map { _ in rng.nextFloat() }
        let bias = (0..<n).map { _ in rng.nextFloat() }
        let slopes = (0..<n).map { _ in 0.05 + abs(rng.nextFloat()) * 0.2 }
        let packed = PackedWeights(b: b, k: k, n: n, ldb: n, bias: bias, slopes: slopes)
        let start = (0..<m * n).map { _ in rng.nextFloat() }
        var results: [[Float]] = []
        for kernel in MicroKernel.available {
            var c = start
            PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, c: &c, ldc: n, accumulate: true, epilogue: .prelu, kernel: kernel)
            results.append(c)
        }
        for r in results.dropFirst() { XCTAssertTrue(r == results[0], "n \(n): kernels \(MicroKernel.available) differ") }
        }
    }

    func testAVX512TilesRunWhereTheCPUHasThem() throws {
        let flags = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        let needed: Set<String> = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        guard needed.isSubset(of: flags) else { throw XCTSkip("this CPU has no AVX-512: only the 8-float tiles run here") }
        XCTAssertEqual(MicroKernel.available, [.simd8, .avx512])
        if ProcessInfo.processInfo.environment["FER_KERNELS"] == nil { XCTAssertEqual(MicroKernel.preferred, .avx512) }
    }

    func testPanelRangesSplitTheProductExactly() {
        var rng = SeededGenerator(seed: 22)
        let (m, n, k) = (11, 40, 9)  // three panels, the last one half full
        let a = (0..<m * k).map { _ in rng.nextFloat() }
        let b = (0..<k * n).map { _ in rng.nextFloat() }
        let packed = PackedWeights(b: b, k: k, n: n, ldb: n, bias: nil, slopes: nil)
        XCTAssertEqual(packed.panels, 3)
        for kernel in MicroKernel.available {
            var whole = [Float](repeating: 0, count: m * n), parts = whole
            PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, c: &whole, ldc: n, accumulate: false, epilogue: .relu, kernel: kernel)
            PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, panels: 0..<1, c: &parts, ldc: n, accumulate: false, epilogue: .relu, kernel: kernel)
            XCTAssertEqual(parts[15], whole[15])
            XCTAssertEqual(parts[16], 0, "\(kernel): panel 1 not yet written")
            PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, panels: 1..<3, c: &parts, ldc: n, accumulate: false, epilogue: .relu, kernel: kernel)
            XCTAssertEqual(parts, whole, "\(kernel)")
        }
    }

    func testPackingLaysColumnsOutInZeroPaddedPanels() {
        // b (2, 17): b[p, j] = 100 p + j
        let b: [Float] = (0..<2 * 17).map { (i: Int) -> Float in Float(i / 17 * 100 + i % 17) }
        let bias: [Float] = (0..<17).map { Float($0) }
        let packed = PackedWeights(b: b, k: 2, n: 17, ldb: 17, bias: bias, slopes: nil)
        XCTAssertEqual(packed.panels, 2)
        XCTAssertEqual(packed.values[16], 100)        // panel 0, row 1, column 0
        XCTAssertEqual(packed.values[32], 16)         // panel 1, row 0, column 16
        XCTAssertEqual(packed.values[33], 0)          // padding
        XCTAssertEqual(packed.values[48], 116)        // panel 1, row 1, column 16
        XCTAssertEqual(packed.bias[16], 16)
        XCTAssertEqual(packed.bias[17], 0)
        XCTAssertNil(packed.slopes)
    }
}
