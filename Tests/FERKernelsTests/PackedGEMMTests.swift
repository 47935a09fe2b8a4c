import FERKernels
import XCTest

/// The packed micro-kernel must agree with the plain loop at odd sizes: row counts around the
/// 6-row tile (tails of 1 to 7 rows, a last row block joined to the one before), column counts around the 16-column panel (partial last
/// panels), inner sizes from 1 up, row strides wider than the rows, and every epilogue.
final class PackedGEMMTests: XCTestCase {
    func testPackedKernelMatchesReferenceAtOddSizesForEveryEpilogue() {
        var rng = SeededGenerator(seed: 21)
        let epilogues: [PackedEpilogue] = [.identity, .relu, .leakyRelu(0.1), .prelu]
        for (m, n, k) in [(1, 1, 1), (5, 7, 3), (6, 16, 8), (7, 17, 13), (13, 33, 64), (50, 24, 129), (97, 48, 40), (2, 5, 300), (49, 20, 256)] {
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
                        PackedGEMM.multiply(m: m, a: a, lda: lda, b: packed, c: &fast, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
                        PackedGEMM.multiplyReference(
                            m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: withBias ? bias : nil, slopes: slopes,
                            c: &slow, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
                        var worst: Float = 0
                        for i in 0..<fast.count { worst = max(worst, abs(fast[i] - slow[i])) }
                        XCTAssertLessThan(worst, 1e-4, "m\(m) n\(n) k\(k) bias \(withBias) \(epilogue) acc \(accumulate)")
                        // Columns between n and the row stride are left as they were.
                        for i in 0..<m { for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j]) } }
                    }
                }
            }
        }
    }

    func testPanelRangesSplitTheProductExactly() {
        var rng = SeededGenerator(seed: 22)
        let (m, n, k) = (11, 40, 9)  // three panels, the last one half full
        let a = (0..<m * k).map { _ in rng.nextFloat() }
        let b = (0..<k * n).map { _ in rng.nextFloat() }
        let packed = PackedWeights(b: b, k: k, n: n, ldb: n, bias: nil, slopes: nil)
        XCTAssertEqual(packed.panels, 3)
        var whole = [Float](repeating: 0, count: m * n), parts = whole
        PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, c: &whole, ldc: n, accumulate: false, epilogue: .relu)
        PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, panels: 0..<1, c: &parts, ldc: n, accumulate: false, epilogue: .relu)
        XCTAssertEqual(parts[15], whole[15])
        XCTAssertEqual(parts[16], 0, "panel 1 not yet written")
        PackedGEMM.multiply(m: m, a: a, lda: k, b: packed, panels: 1..<3, c: &parts, ldc: n, accumulate: false, epilogue: .relu)
        XCTAssertEqual(parts, whole)
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
