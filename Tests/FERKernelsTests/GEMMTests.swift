import FERKernels
import XCTest

final class GEMMTests: XCTestCase {
    func testOpenBLASAgreesWithTheTripleLoopOnOddShapesWithStridesAndAccumulation() {
        var rng = SeededGenerator(seed: 3)
        for (m, n, k) in [(1, 1, 1), (13, 7, 5), (49, 66, 256), (3, 127, 19)] {
            let (lda, ldb, ldc) = (k + 3, n + 1, n + 2)
            let a = (0..<m * lda).map { _ in rng.nextFloat() }
            let b = (0..<k * ldb).map { _ in rng.nextFloat() }
            let c0 = (0..<m * ldc).map { _ in rng.nextFloat() }
            for accumulate in [false, true] {
                var fast = c0, slow = c0
                GEMM.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &fast, ldc: ldc, accumulate: accumulate)
                GEMM.multiplyReference(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &slow, ldc: ldc, accumulate: accumulate)
                for i in 0..<fast.count {
                    XCTAssertEqual(fast[i], slow[i], accuracy: 1e-4, "m\(m) n\(n) k\(k) acc \(accumulate) at \(i)")
                }
            }
        }
    }

    func testThreadCountIsSetExplicitly() {
        BLASThreads.set(1)
        XCTAssertEqual(BLASThreads.current, 1)
    }
}

final class Im2colTests: XCTestCase {
    /// im2col + GEMM with the packed weight equals a direct dense convolution.
    func testLoweredConvolutionEqualsDirectConvolution() {
        var rng = SeededGenerator(seed: 5)
        let (batch, h, w, cin, cout, k, stride, pad) = (2, 9, 8, 3, 5, 3, 2, 1)
        let input = (0..<batch * h * w * cin).map { _ in rng.nextFloat() }
        let weight = (0..<cout * cin * k * k).map { _ in rng.nextFloat() }  // PyTorch (cout, cin, k, k)
        let oh = Im2col.outputSize(h, kernel: k, stride: stride, pad: pad)
        let ow = Im2col.outputSize(w, kernel: k, stride: stride, pad: pad)
        XCTAssertEqual([oh, ow], [5, 4])
        var columns = [Float](repeating: 0, count: batch * oh * ow * k * k * cin)
        Im2col.lower(input: input, batch: batch, height: h, width: w, channels: cin, kernel: k, stride: stride, pad: pad, columns: &columns)
        let packed = Im2col.packWeight(torchWeight: weight, cout: cout, cin: cin, kernel: k)
        var out = [Float](repeating: 0, count: batch * oh * ow * cout)
        GEMM.multiply(m: batch * oh * ow, n: cout, k: k * k * cin, a: columns, lda: k * k * cin, b: packed, ldb: cout, c: &out, ldc: cout)
        for b in 0..<batch { for oy in 0..<oh { for ox in 0..<ow { for co in 0..<cout {
            var sum: Float = 0
            for ci in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                sum += input[((b * h + iy) * w + ix) * cin + ci] * weight[((co * cin + ci) * k + ky) * k + kx]
            } } }
            XCTAssertEqual(out[((b * oh + oy) * ow + ox) * cout + co], sum, accuracy: 1e-5)
        } } } }
    }
}

final class ElementwiseTests: XCTestCase {
    func testBiasAndActivationsOnVectorBodyAndTail() {
        let cols = 11
        let values: [Float] = (0..<2 * cols).map { Float($0) - 10.5 }
        let bias: [Float] = (0..<cols).map { Float($0) * 0.25 }
        let slope: [Float] = (0..<cols).map { 0.1 + Float($0) * 0.01 }
        func run(_ activation: (UnsafePointer<Float>) -> Activation) -> [Float] {
            var x = values
            slope.withUnsafeBufferPointer { s in
                Elementwise.biasActivation(&x, rows: 2, cols: cols, ld: cols, bias: bias, activation: activation(s.baseAddress!))
            }
            return x
        }
        let prelu = run { .prelu($0) }, relu = run { _ in .relu }, hs = run { _ in .hardSwish }, sig = run { _ in .sigmoid }
        for i in 0..<values.count {
            let v = values[i] + bias[i % cols]
            XCTAssertEqual(prelu[i], v >= 0 ? v : v * slope[i % cols], accuracy: 1e-6)
            XCTAssertEqual(relu[i], max(v, 0))
            XCTAssertEqual(hs[i], v * (min(max(v + 3, 0), 6) / 6), "h_swish in PyTorch's order, x * (relu6(x + 3) / 6)")
            XCTAssertEqual(sig[i], 1 / (1 + exp(-v)), accuracy: 1e-6)
        }
    }

    func testSigmoidIsThePolynomialOnVectorsAndExpfOnTheTailAtAnyVectorWidth() {
        // 45 columns: 16-float vectors (on AVX-512), an 8-float one, a scalar tail; every value
        // must be what the 8-float loop gives, bit for bit.
        let (rows, cols) = (3, 45)
        let values: [Float] = (0..<rows * cols).map { Float($0 % 29) * 0.7 - 10 }
        var x = values
        Elementwise.biasActivation(&x, rows: rows, cols: cols, ld: cols, bias: nil, activation: .sigmoid)
        for r in 0..<rows {
            for c in 0..<cols {
                let v = values[r * cols + c]
                let expected = c < cols & ~7 ? (1 / (1 + Elementwise.exponential(SIMD8(repeating: -v))))[0] : 1 / (1 + expf(-v))
                XCTAssertEqual(x[r * cols + c].bitPattern, expected.bitPattern, "row \(r) column \(c)")
            }
        }
    }

    func testSoftmaxAndL2Normalisation() {
        var x: [Float] = [1, 2, 3, 1000, 1000, 1000]
        Elementwise.softmax(&x, rows: 2, cols: 3)
        XCTAssertEqual(x[0], 0.09003057, accuracy: 1e-7)
        XCTAssertEqual(x[2], 0.66524096, accuracy: 1e-7)
        XCTAssertEqual(x[3], 1.0 / 3, accuracy: 1e-7)
        var y: [Float] = [3, 4, 0, 0]
        Elementwise.l2Normalize(&y, rows: 2, cols: 2)
        XCTAssertEqual(y, [0.6, 0.8, 0, 0])
    }

    func testCoordinatePoolingAndGating() {
        // One 2x3 image with 9 channels (vector body + tail): value = 100*y + 10*x + c.
        let (h, w, c) = (2, 3, 9)
        var x = [Float](repeating: 0, count: h * w * c)
        for y in 0..<h { for xx in 0..<w { for ch in 0..<c { x[(y * w + xx) * c + ch] = Float(100 * y + 10 * xx + ch) } } }
        var pooled = [Float](repeating: -1, count: (h + w) * c)
        CoordinatePooling.pool(input: x, batch: 1, height: h, width: w, channels: c, pooled: &pooled)
        XCTAssertEqual(pooled[0 * c + 4], 10 + 4)        // row 0: mean over x of 10x + 4
        XCTAssertEqual(pooled[1 * c + 4], 100 + 10 + 4)  // row 1
        XCTAssertEqual(pooled[(h + 2) * c + 8], 50 + 20 + 8) // column 2: mean over y
        var gated = x
        CoordinatePooling.gate(&gated, batch: 1, height: h, width: w, channels: c, gates: pooled)
        XCTAssertEqual(gated[(1 * w + 2) * c + 8], x[(1 * w + 2) * c + 8] * pooled[1 * c + 8] * pooled[(h + 2) * c + 8])
    }
}

final class CoordinatePoolingTests: XCTestCase {
    /// Row and column means against the plain loop: odd sizes, channel counts around the
    /// 8-float vector (body and tail), two images.
    func testPoolingMatchesTheReferenceAtOddSizes() {
        var rng = SeededGenerator(seed: 31)
        for (h, w, c) in [(1, 1, 1), (7, 9, 13), (28, 28, 96), (5, 3, 8), (14, 11, 19)] {
            let batch = 2
            let x = (0..<batch * h * w * c).map { _ in rng.nextFloat() }
            var fast = [Float](repeating: -7, count: batch * (h + w) * c), slow = fast
            CoordinatePooling.pool(input: x, batch: batch, height: h, width: w, channels: c, pooled: &fast)
            CoordinatePooling.poolReference(input: x, batch: batch, height: h, width: w, channels: c, pooled: &slow)
            var worst: Float = 0
            for i in 0..<fast.count { worst = max(worst, abs(fast[i] - slow[i])) }
            XCTAssertLessThan(worst, 1e-5, "\(h)x\(w)x\(c)")

            // Channels pooled in ranges (as threads share them; a range may start mid-vector) give the same floats.
            var parts = [Float](repeating: -7, count: fast.count)
            for lanes in [0..<c / 3, c / 3..<c - 1, c - 1..<c] {
                CoordinatePooling.pool(input: x, batch: batch, height: h, width: w, channels: c, pooled: &parts, lanes: lanes)
            }
            XCTAssertEqual(parts, fast, "\(h)x\(w)x\(c) in channel ranges")

            // Each image fed in runs of rows, in order (as a depthwise pass pools what it has just
            // written), each run over two channel ranges: the same floats as pooling it at once.
            var fed = [Float](repeating: 7, count: fast.count)
            x.withUnsafeBufferPointer { input in
                fed.withUnsafeMutableBufferPointer { pooled in
                    for n in 0..<batch {
                        for lines in [0..<h / 2, h / 2..<h / 2, h / 2..<h - 1, h - 1..<h] {
                            for lanes in [0..<c / 2, c / 2..<c] {
                                CoordinatePooling.accumulate(image: input.baseAddress! + n * h * w * c, height: h, width: w, channels: c,
                                                             pooled: pooled.baseAddress! + n * (h + w) * c, lines: lines, lanes: lanes)
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(fed, fast, "\(h)x\(w)x\(c) fed in runs of rows")
        }
    }

    /// Every gated value is `x * (rowGate * columnGate)`, exactly, whatever the vector width
    /// (37 channels: 16-float vectors on AVX-512, an 8-float one, a scalar tail).
    func testGatingIsTheProductOfBothGatesOnEveryChannel() {
        var rng = SeededGenerator(seed: 41)
        let (batch, h, w, c) = (2, 3, 5, 37)
        let x = (0..<batch * h * w * c).map { _ in rng.nextFloat() }
        let gates = (0..<batch * (h + w) * c).map { _ in rng.nextFloat() }
        var gated = x
        CoordinatePooling.gate(&gated, batch: batch, height: h, width: w, channels: c, gates: gates)
        for n in 0..<batch { for y in 0..<h { for xx in 0..<w { for ch in 0..<c {
            let i = ((n * h + y) * w + xx) * c + ch
            let (r, k) = (gates[(n * (h + w) + y) * c + ch], gates[(n * (h + w) + h + xx) * c + ch])
            XCTAssertEqual(gated[i], x[i] * (r * k), "image \(n) row \(y) column \(xx) channel \(ch)")
        } } } }
    }

    /// Gating by rows over the batch, in ranges, equals gating everything at once.
    func testGatingInRowRangesEqualsGatingAtOnce() {
        var rng = SeededGenerator(seed: 37)
        let (batch, h, w, c) = (3, 5, 4, 11)
        let x = (0..<batch * h * w * c).map { _ in rng.nextFloat() }
        let gates = (0..<batch * (h + w) * c).map { _ in rng.nextFloat() }
        var whole = x, parts = x
        CoordinatePooling.gate(&whole, batch: batch, height: h, width: w, channels: c, gates: gates)
        for rows in [0..<4, 4..<11, 11..<15] {
            CoordinatePooling.gate(&parts, batch: batch, height: h, width: w, channels: c, gates: gates, rows: rows)
        }
        XCTAssertEqual(parts, whole)
        // Image 2, row 3, column 1, channel 10.
        let i = ((2 * h + 3) * w + 1) * c + 10
        XCTAssertEqual(whole[i], x[i] * (gates[(2 * (h + w) + 3) * c + 10] * gates[(2 * (h + w) + h + 1) * c + 10]))
    }
}

final class SmallGEMMTests: XCTestCase {
    /// The own small-product kernel against the triple loop: column counts around 8 and 16
    /// (vector bodies and tails), strided operands, accumulation.
    func testSmallKernelAgreesWithTheTripleLoop() {
        var rng = SeededGenerator(seed: 9)
        for (m, n, k) in [(1, 1, 1), (7, 8, 3), (14, 10, 96), (5, 16, 8), (3, 25, 17), (28, 96, 8)] {
            let (lda, ldb, ldc) = (k + 1, n + 3, n + 5)
            let a = (0..<m * lda).map { _ in rng.nextFloat() }
            let b = (0..<k * ldb).map { _ in rng.nextFloat() }
            let c0 = (0..<m * ldc).map { _ in rng.nextFloat() }
            for accumulate in [false, true] {
                var fast = c0, slow = c0
                GEMM.multiplySmall(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &fast, ldc: ldc, accumulate: accumulate)
                GEMM.multiplyReference(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &slow, ldc: ldc, accumulate: accumulate)
                for i in 0..<fast.count {
                    XCTAssertEqual(fast[i], slow[i], accuracy: 1e-4, "m\(m) n\(n) k\(k) acc \(accumulate) at \(i)")
                }
            }
        }
    }
}

final class ExponentialTests: XCTestCase {
    /// The SIMD exponential behind the attention sigmoids stays within 2 ulp of expf over the
    /// range that matters, and saturates instead of overflowing.
    func testSIMDExponentialAgreesWithExpf() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let v = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0013 })
            let e = Elementwise.exponential(v)
            for i in 0..<8 {
                let want = expf(v[i])
                worst = max(worst, abs(e[i] - want) / want.ulp)
            }
            x += 0.0173
        }
        XCTAssertLessThanOrEqual(worst, 2, "worst error in ulp")
        let extreme = Elementwise.exponential(SIMD8<Float>(-1000, -100, 100, 1000, 0, 1, -1, 0.5))
        XCTAssertEqual(extreme[0], 0, accuracy: 1e-37)
        XCTAssertTrue(extreme[3].isFinite)
        XCTAssertEqual(extreme[4], 1)
    }
}
