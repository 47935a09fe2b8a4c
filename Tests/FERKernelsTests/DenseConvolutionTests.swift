import FERKernels
import XCTest

/// The dense convolution kernels (both methods) must agree with the plain loop, and with the
/// engine's whole-tensor im2col + GEMM + bias pass, at odd sizes: channel counts around the
/// 8-float vector and 16-channel panel, widths that split tiles across rows, stride 2, batches,
/// every epilogue, residual accumulation, and pixel strides wider than the channels.
final class DenseConvolutionTests: XCTestCase {
    let epilogues: [PackedEpilogue] = [.identity, .relu, .leakyRelu(0.1), .prelu]

    func testBothMethodsMatchReferenceAtOddSizesStridesAndEveryEpilogue() throws {
        var rng = SeededGenerator(seed: 31)
        // (kernel, stride, padding, cin, cout, height, width, batch)
        var cases = [
            (3, 1, 1, 1, 1, 1, 1, 1), (3, 1, 1, 3, 8, 7, 9, 2), (3, 2, 1, 3, 8, 9, 13, 1), (3, 1, 1, 5, 7, 6, 5, 3),
            (3, 1, 1, 17, 19, 5, 11, 2), (3, 2, 1, 16, 33, 8, 7, 2), (3, 1, 0, 9, 16, 5, 6, 1), (5, 1, 2, 4, 17, 7, 6, 1),
            (5, 2, 2, 6, 5, 9, 9, 2), (1, 1, 0, 13, 20, 3, 7, 1), (3, 2, 1, 64, 32, 5, 6, 1), (2, 2, 0, 7, 9, 6, 5, 1),
            (3, 2, 1, 3, 8, 13, 11, 1), (3, 1, 1, 2, 3, 5, 5, 1), (3, 1, 1, 9, 6, 3, 7, 2), (3, 2, 1, 3, 1, 9, 9, 1),
        ]
        // One-row images of 1 to 13 pixels: every tail of the 6-pixel tiles, and of the 12-pixel
        // tiles that eight or fewer output channels run.
        for w in 1...13 { cases += [(3, 1, 1, 3, 8, 1, w, 1), (3, 1, 1, 5, 17, 1, w, 1)] }
        // Around the AVX-512 tiles: 12 pixels by 32 channels (two panels), an odd last panel.
        for w in [11, 12, 13, 23, 25] { cases += [(3, 1, 1, 4, 48, 1, w, 1), (3, 2, 1, 6, 40, 3, w, 1)] }
        for (k, s, p, cin, cout, h, w, n) in cases {
            for (ldi, ldo) in [(cin, cout), (cin + 3, cout + 5)] {
                let g = try ConvolutionGeometry(batch: n, height: h, width: w, inputChannels: cin, inputStride: ldi,
                                                outputChannels: cout, outputStride: ldo, kernel: k, stride: s, padding: p)
                for kernel in MicroKernel.available {
                    for method in DenseConvolution.Method.allCases {
                        for epilogue in epilogues {
                            for accumulate in [false, true] {
                                check(g, method: method, kernel: kernel, epilogue: epilogue, accumulate: accumulate,
                                      withBias: (cin + cout) % 2 == 0, &rng,
                                      label: "k\(k) s\(s) p\(p) \(cin)->\(cout) \(h)x\(w) n\(n) ld \(ldi)/\(ldo) \(kernel) \(method) \(epilogue) acc \(accumulate)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testMatchesTheEnginesIm2colGEMMAndBiasPass() throws {
        // RetinaFace's SSH and FPN shapes at a small odd size, and both stems.
        var rng = SeededGenerator(seed: 32)
        for (cin, cout, stride, h, w) in [(64, 64, 1, 9, 11), (64, 32, 1, 7, 13), (16, 16, 1, 5, 9), (3, 8, 2, 15, 17), (3, 64, 2, 12, 12)] {
            let g = try ConvolutionGeometry(batch: 2, height: h, width: w, inputChannels: cin, outputChannels: cout,
                                            kernel: 3, stride: stride, padding: 1)
            let input = (0..<2 * h * w * cin).map { _ in rng.nextFloat() }
            let weight = (0..<g.inner * cout).map { _ in rng.nextFloat() }
            let bias = (0..<cout).map { _ in rng.nextFloat() }
            var columns = [Float](repeating: 0, count: g.pixels * g.inner)
            var expected = [Float](repeating: 0, count: g.pixels * cout)
            Im2col.lower(input: input, batch: 2, height: h, width: w, channels: cin, kernel: 3, stride: stride, pad: 1, columns: &columns)
            GEMM.multiply(m: g.pixels, n: cout, k: g.inner, a: columns, lda: g.inner, b: weight, ldb: cout, c: &expected, ldc: cout)
            Elementwise.biasActivation(&expected, rows: g.pixels, cols: cout, ld: cout, bias: bias, activation: .leakyRelu(0.1))
            let packed = DenseConvolution.pack(weight: weight, kernel: 3, inputChannels: cin, outputChannels: cout, bias: bias, slopes: nil)
            for method in DenseConvolution.Method.allCases {
                var scratch = [Float](repeating: .nan, count: DenseConvolution.scratchCount(g, method: method))
                var actual = [Float](repeating: .nan, count: g.pixels * cout)
                DenseConvolution.convolve(g, input: input, weights: packed, output: &actual, epilogue: .leakyRelu(0.1), scratch: &scratch, method: method)
                XCTAssertLessThan(largestDifference(actual, expected), 1e-4, "\(cin)->\(cout) s\(stride) \(method)")
            }
        }
    }

    func testPixelRangesSplitTheConvolutionExactly() throws {
        // Ranges that cut tiles and rows, and a second image; each part writes its pixels only.
        var rng = SeededGenerator(seed: 34)
        let one = try ConvolutionGeometry(batch: 1, height: 7, width: 9, inputChannels: 16, outputChannels: 20, kernel: 3, stride: 1, padding: 1)
        let g = one.withBatch(2)
        XCTAssertEqual(g.pixels, 2 * 63)
        let input = (0..<2 * 63 * 16).map { _ in rng.nextFloat() }
        let weight = (0..<g.inner * 20).map { _ in rng.nextFloat() }
        let packed = DenseConvolution.pack(weight: weight, kernel: 3, inputChannels: 16, outputChannels: 20, bias: nil, slopes: nil)
        for kernel in MicroKernel.available {
            for method in DenseConvolution.Method.allCases {
                var scratch = [Float](repeating: 0, count: DenseConvolution.scratchCount(g, method: method))
                var whole = [Float](repeating: -99, count: g.pixels * 20), parts = whole
                func run(_ pixels: Range<Int>?, _ out: inout [Float]) {
                    DenseConvolution.convolve(g, input: input, weights: packed, output: &out, epilogue: .relu, scratch: &scratch, pixels: pixels,
                                              method: method, kernel: kernel)
                }
                run(nil, &whole)
                run(0..<29, &parts)
                XCTAssertEqual(parts[28 * 20 + 19], whole[28 * 20 + 19], "\(kernel) \(method)")
                XCTAssertEqual(parts[29 * 20], -99, "\(kernel) \(method): pixel 29 not yet written")
                run(29..<70, &parts)
                run(70..<126, &parts)
                XCTAssertTrue(parts == whole, "\(kernel) \(method): the parts differ from the whole")
            }
        }
    }

    func testNarrowRowTilesGiveTheGeneralTilesFloatsAtEveryBorderAndRange() throws {
        // 1 to 4 input channels stored densely run rows of 12 pixels from three row pointers; the
        // same input with a wider pixel stride runs the general tiles, which sum in the same order.
        var rng = SeededGenerator(seed: 35)
        for cin in 1...4 {
            for (stride, cout, h, w) in [(2, 8, 9, 41), (1, 8, 5, 30), (2, 3, 7, 28), (1, 1, 4, 14), (2, 8, 8, 27), (1, 5, 3, 13)] {
                let dense = try ConvolutionGeometry(batch: 2, height: h, width: w, inputChannels: cin, outputChannels: cout,
                                                    kernel: 3, stride: stride, padding: 1)
                let strided = try ConvolutionGeometry(batch: 2, height: h, width: w, inputChannels: cin, inputStride: cin + 1,
                                                      outputChannels: cout, kernel: 3, stride: stride, padding: 1)
                let pixels = (0..<2 * h * w).map { _ in (0..<cin).map { _ in rng.nextFloat() } }
                let input = pixels.flatMap { $0 }, wide = pixels.flatMap { $0 + [rng.nextFloat()] }
                let weight = (0..<dense.inner * cout).map { _ in rng.nextFloat() }
                let bias = (0..<cout).map { _ in rng.nextFloat() }
                let packed = DenseConvolution.pack(weight: weight, kernel: 3, inputChannels: cin, outputChannels: cout, bias: bias, slopes: nil)
                var scratch = [Float](repeating: 0, count: 8)
                var expected = [Float](repeating: 0, count: dense.pixels * cout), general = expected, rows = expected
                DenseConvolution.convolveReference(dense, input: input, weight: weight, bias: bias, slopes: nil, output: &expected, epilogue: .leakyRelu(0.1))
                DenseConvolution.convolve(strided, input: wide, weights: packed, output: &general, epilogue: .leakyRelu(0.1), scratch: &scratch)
                // In three parts that cut rows and images.
                for part in [0..<dense.pixels / 3, dense.pixels / 3 ..< dense.pixels / 2 + 5, dense.pixels / 2 + 5 ..< dense.pixels] {
                    DenseConvolution.convolve(dense, input: input, weights: packed, output: &rows, epilogue: .leakyRelu(0.1), scratch: &scratch, pixels: part)
                }
                let label = "\(cin)->\(cout) s\(stride) \(h)x\(w)"
                XCTAssertLessThan(largestDifference(rows, expected), 1e-4, label)
                XCTAssertTrue(rows == general, "\(label): the row tiles differ from the general tiles")
                // Into a channel slice of a wider output (a concatenation): the same values, the
                // other channels untouched.
                let slice = try ConvolutionGeometry(batch: 2, height: h, width: w, inputChannels: cin, outputChannels: cout,
                                                    outputStride: cout + 3, kernel: 3, stride: stride, padding: 1)
                var wider = [Float](repeating: -7, count: dense.pixels * (cout + 3))
                DenseConvolution.convolve(slice, input: input, weights: packed, output: &wider, epilogue: .leakyRelu(0.1), scratch: &scratch)
                for p in 0..<dense.pixels {
                    XCTAssertEqual(Array(wider[p * (cout + 3) ..< p * (cout + 3) + cout]), Array(rows[p * cout ..< (p + 1) * cout]), "\(label) pixel \(p)")
                    XCTAssertEqual(Array(wider[p * (cout + 3) + cout ..< (p + 1) * (cout + 3)]), [-7, -7, -7], "\(label) pixel \(p)")
                }
            }
        }
    }

    func testKernelsStayInsideTheirScratch() throws {
        // Guard values after the scratch the size function promises must survive.
        var rng = SeededGenerator(seed: 33)
        for (cin, cout, stride) in [(3, 8, 2), (64, 16, 1), (5, 33, 1)] {
            let g = try ConvolutionGeometry(batch: 1, height: 23, width: 21, inputChannels: cin, outputChannels: cout,
                                            kernel: 3, stride: stride, padding: 1)
            let input = (0..<23 * 21 * cin).map { _ in rng.nextFloat() }
            let weight = (0..<g.inner * cout).map { _ in rng.nextFloat() }
            let packed = DenseConvolution.pack(weight: weight, kernel: 3, inputChannels: cin, outputChannels: cout, bias: nil, slopes: nil)
            for method in DenseConvolution.Method.allCases {
                let count = DenseConvolution.scratchCount(g, method: method)
                var scratch = [Float](repeating: 7, count: count + 64)
                var out = [Float](repeating: 0, count: g.pixels * cout)
                DenseConvolution.convolve(g, input: input, weights: packed, output: &out, epilogue: .identity, scratch: &scratch, method: method)
                XCTAssertEqual(Array(scratch[count...]), [Float](repeating: 7, count: 64), "\(cin)->\(cout) \(method)")
            }
        }
        // Every shape runs indirect, which needs one pixel of zeros whatever the image and batch;
        // the lowered method a block of about 32 Ki floats.
        let stem = try ConvolutionGeometry(batch: 4, height: 640, width: 640, inputChannels: 3, outputChannels: 8, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(DenseConvolution.method(for: stem), .indirect)
        XCTAssertEqual(DenseConvolution.scratchCount(stem), 3)
        XCTAssertLessThanOrEqual(DenseConvolution.scratchCount(stem, method: .lowered), 32 * 1024 + 6 * 27)
        let ssh = try ConvolutionGeometry(batch: 4, height: 80, width: 56, inputChannels: 64, outputChannels: 32, kernel: 3, stride: 1, padding: 1)
        XCTAssertEqual(DenseConvolution.scratchCount(ssh), 64)
    }

    func testGeometryRefusesShapesItCannotRun() {
        func reason(_ make: () throws -> ConvolutionGeometry) -> String {
            do { _ = try make(); return "accepted" } catch let error as ConvolutionError { return error.description } catch { return "\(error)" }
        }
        XCTAssertEqual(reason { try ConvolutionGeometry(batch: 1, height: 2, width: 2, inputChannels: 3, outputChannels: 4, kernel: 7, stride: 1, padding: 1) },
                       "invalid convolution: a 7x7 kernel does not fit a 2x2 input padded by 1")
        XCTAssertEqual(reason { try ConvolutionGeometry(batch: 1, height: 5, width: 5, inputChannels: 3, outputChannels: 4, outputStride: 3, kernel: 3, stride: 1, padding: 1) },
                       "invalid convolution: 4 output channels with pixel stride 3")
        XCTAssertEqual(reason { try ConvolutionGeometry(batch: 1, height: 5, width: 5, inputChannels: 3, inputStride: 2, outputChannels: 4, kernel: 3, stride: 1, padding: 1) },
                       "invalid convolution: 3 input channels with pixel stride 2")
        XCTAssertEqual(reason { try ConvolutionGeometry(batch: 1, height: 5, width: 5, inputChannels: 3, outputChannels: 4, kernel: 3, stride: 0, padding: 1) },
                       "invalid convolution: kernel 3, stride 0, padding 1")
        XCTAssertEqual(reason { try ConvolutionGeometry(batch: 1, height: 0, width: 5, inputChannels: 3, outputChannels: 4, kernel: 3, stride: 1, padding: 1) },
                       "invalid convolution: input 0x5 is empty")
        let g = try? ConvolutionGeometry(batch: 2, height: 443, width: 640, inputChannels: 3, outputChannels: 8, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(g?.outHeight, 222)
        XCTAssertEqual(g?.outWidth, 320)
        XCTAssertEqual(g?.pixels, 2 * 222 * 320)
    }

    /// Runs `method` against the reference on random data (``checkAgainstReference``).
    private func check(
        _ g: ConvolutionGeometry, method: DenseConvolution.Method, kernel: MicroKernel, epilogue: PackedEpilogue, accumulate: Bool, withBias: Bool,
        _ rng: inout SeededGenerator, label: String
    ) {
        checkAgainstReference(g, epilogue: epilogue, accumulate: accumulate, withBias: withBias, &rng, tolerance: { _ in 1e-4 }, label) {
            input, weight, bias, slopes, output in
            let packed = DenseConvolution.pack(weight: weight, kernel: g.kernel, inputChannels: g.inputChannels,
                                               outputChannels: g.outputChannels, bias: bias, slopes: slopes)
            var scratch = [Float](repeating: .nan, count: DenseConvolution.scratchCount(g, method: method))
            DenseConvolution.convolve(g, input: input, weights: packed, output: &output, accumulate: accumulate, epilogue: epilogue,
                                      scratch: &scratch, method: method, kernel: kernel)
        }
    }
}

/// Runs `convolve` (given the input, the unpacked weight, the bias or nil, the PReLU slopes, and
/// the output to write) against ``DenseConvolution/convolveReference`` on random data. The output
/// starts from random values (read when accumulating), and the channels between `outputChannels`
/// and the stride must keep them; `tolerance` is given the reference's output.
func checkAgainstReference(
    _ g: ConvolutionGeometry, epilogue: PackedEpilogue, accumulate: Bool, withBias: Bool, _ rng: inout SeededGenerator,
    tolerance: ([Float]) -> Float, _ label: String,
    _ convolve: (_ input: [Float], _ weight: [Float], _ bias: UnsafePointer<Float>?, _ slopes: UnsafePointer<Float>, _ output: inout [Float]) -> Void
) {
    let input = (0..<g.batch * g.height * g.width * g.inputStride).map { _ in rng.nextFloat() }
    let weight = (0..<g.inner * g.outputChannels).map { _ in rng.nextFloat() }
    let bias = (0..<g.outputChannels).map { _ in rng.nextFloat() }
    let slopes = (0..<g.outputChannels).map { _ in 0.05 + abs(rng.nextFloat()) * 0.2 }
    let start = (0..<g.pixels * g.outputStride).map { _ in rng.nextFloat() }
    var expected = start, actual = start
    bias.withUnsafeBufferPointer { b in
        slopes.withUnsafeBufferPointer { sl in
            let bp = withBias ? b.baseAddress : nil
            DenseConvolution.convolveReference(g, input: input, weight: weight, bias: bp, slopes: sl.baseAddress, output: &expected,
                                               accumulate: accumulate, epilogue: epilogue)
            convolve(input, weight, bp, sl.baseAddress!, &actual)
        }
    }
    assertConvolutionOutput(actual, expected, start: start, g, tolerance: tolerance(expected), label)
}

/// A convolution's output against the reference's: within `tolerance` everywhere, and the
/// channels between `outputChannels` and the pixel stride still holding what `start` held.
func assertConvolutionOutput(
    _ actual: [Float], _ expected: [Float], start: [Float], _ g: ConvolutionGeometry, tolerance: Float, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertLessThan(largestDifference(actual, expected), tolerance, label, file: file, line: line)
    for p in 0..<g.pixels {
        for c in g.outputChannels..<g.outputStride where actual[p * g.outputStride + c] != start[p * g.outputStride + c] {
            XCTFail("\(label): pixel \(p) channel \(c) past the output channels was written", file: file, line: line)
            return
        }
    }
}

/// The largest absolute difference, infinite where either side holds a NaN (a pixel that read
/// uninitialised scratch).
func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
    var worst: Float = 0
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if d.isNaN { return .infinity }
        worst = max(worst, d)
    }
    return worst
}
