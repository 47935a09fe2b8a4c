import FERKernels
import XCTest

/// Winograd F(4x4, 3x3) must compute the 3x3 stride-1 convolution the plain loop does, within
/// the rounding its transforms add, at every shape the tiles can meet: images that are not
/// multiples of 4 (partial tiles), 1-pixel images, channel counts around the 8-float vectors,
/// padding 0 to 2, channel strides (concatenation slices), batches, every epilogue, residuals;
/// and tiles shared between threads must give the floats of one thread.
final class WinogradTests: XCTestCase {
    let epilogues: [PackedEpilogue] = [.identity, .relu, .leakyRelu(0.1), .prelu]

    func testMatchesTheReferenceAtOddSizesPaddingsAndEveryEpilogue() throws {
        var rng = SeededGenerator(seed: 41)
        // (padding, cin, cout, height, width, batch)
        var cases = [
            (1, 1, 1, 1, 1, 1), (1, 3, 8, 7, 9, 2), (1, 8, 8, 4, 4, 1), (1, 16, 16, 8, 12, 1), (1, 17, 19, 5, 11, 2),
            (0, 9, 16, 5, 6, 1), (2, 4, 17, 7, 6, 1), (0, 5, 7, 3, 3, 1), (1, 64, 32, 9, 7, 1), (1, 7, 33, 13, 10, 2),
            (2, 2, 3, 1, 1, 1),
        ]
        for w in 1...9 { cases.append((1, 5, 9, 2, w, 1)) }
        for (p, cin, cout, h, w, n) in cases {
            for (ldi, ldo) in [(cin, cout), (cin + 3, cout + 5)] {
                let g = try ConvolutionGeometry(batch: n, height: h, width: w, inputChannels: cin, inputStride: ldi,
                                                outputChannels: cout, outputStride: ldo, kernel: 3, stride: 1, padding: p)
                for epilogue in epilogues {
                    for accumulate in [false, true] {
                        check(g, epilogue: epilogue, accumulate: accumulate, withBias: (cin + cout) % 2 == 0, &rng,
                              label: "p\(p) \(cin)->\(cout) \(h)x\(w) n\(n) ld \(ldi)/\(ldo) \(epilogue) acc \(accumulate)")
                    }
                }
            }
        }
    }

    func testRetinaFaceShapesStayWithinItsTolerance() throws {
        // The detector's FPN and SSH convolutions at a level-1 map of a 640x443 input (80x56),
        // several blocks of tiles each; activations of the size its layers see.
        var rng = SeededGenerator(seed: 42)
        for (cin, cout) in [(64, 64), (64, 32), (64, 16), (16, 16)] {
            let g = try ConvolutionGeometry(batch: 1, height: 56, width: 80, inputChannels: cin, outputChannels: cout,
                                            kernel: 3, stride: 1, padding: 1)
            XCTAssertGreaterThan(Winograd.tileCount(g), 2 * 96, "more than one block")
            let input = (0..<g.height * g.width * cin).map { _ in 4 * rng.nextFloat() }
            let weight = (0..<g.inner * cout).map { _ in 0.2 * rng.nextFloat() }
            let bias = (0..<cout).map { _ in rng.nextFloat() }
            var expected = [Float](repeating: 0, count: g.pixels * cout), actual = expected
            DenseConvolution.convolveReference(g, input: input, weight: weight, bias: bias, slopes: nil, output: &expected, epilogue: .identity)
            let weights = WinogradWeights(weight: weight, inputChannels: cin, outputChannels: cout, bias: bias, slopes: nil)
            var scratch = [Float](repeating: .nan, count: Winograd.scratchCount(g))
            Winograd.convolve(g, input: input, weights: weights, output: &actual, epilogue: .identity, scratch: &scratch)
            let largest = expected.map(abs).max()!
            XCTAssertLessThan(largestDifference(actual, expected), 1e-5 * largest, "\(cin)->\(cout): relative to the largest output")
        }
    }

    func testTileRangesSplitTheConvolutionExactly() throws {
        var rng = SeededGenerator(seed: 43)
        let g = try ConvolutionGeometry(batch: 2, height: 10, width: 13, inputChannels: 16, outputChannels: 20, kernel: 3, stride: 1, padding: 1)
        XCTAssertEqual(Winograd.tileCount(g), 2 * 3 * 4)
        let input = (0..<2 * 10 * 13 * 16).map { _ in rng.nextFloat() }
        let weight = (0..<g.inner * 20).map { _ in rng.nextFloat() }
        let weights = WinogradWeights(weight: weight, inputChannels: 16, outputChannels: 20, bias: nil, slopes: nil)
        var scratch = [Float](repeating: 0, count: Winograd.scratchCount(g))
        var whole = [Float](repeating: -99, count: g.pixels * 20), parts = whole
        func run(_ tiles: Range<Int>?, _ out: inout [Float]) {
            Winograd.convolve(g, input: input, weights: weights, output: &out, epilogue: .relu, scratch: &scratch, tiles: tiles)
        }
        run(nil, &whole)
        run(0..<5, &parts)
        // Tile 4 is the first image's rows 4-7, columns 0-3; tile 5 starts at column 4 of row 4.
        XCTAssertEqual(parts[(7 * 13 + 3) * 20 + 19], whole[(7 * 13 + 3) * 20 + 19])
        XCTAssertEqual(parts[(4 * 13 + 4) * 20], -99, "tile 5 not yet written")
        XCTAssertEqual(parts[(8 * 13) * 20], -99, "tile 8 not yet written")
        run(5..<17, &parts)
        run(17..<24, &parts)
        XCTAssertTrue(parts == whole, "the parts differ from the whole")
    }

    func testStaysInsideItsScratchAndRefusesWhatItCannotRun() throws {
        var rng = SeededGenerator(seed: 44)
        for (cin, cout) in [(3, 8), (64, 16), (5, 33)] {
            let g = try ConvolutionGeometry(batch: 1, height: 23, width: 21, inputChannels: cin, outputChannels: cout, kernel: 3, stride: 1, padding: 1)
            let input = (0..<23 * 21 * cin).map { _ in rng.nextFloat() }
            let weight = (0..<g.inner * cout).map { _ in rng.nextFloat() }
            let weights = WinogradWeights(weight: weight, inputChannels: cin, outputChannels: cout, bias: nil, slopes: nil)
            let count = Winograd.scratchCount(g)
            var scratch = [Float](repeating: 7, count: count + 64)
            var out = [Float](repeating: 0, count: g.pixels * cout)
            Winograd.convolve(g, input: input, weights: weights, output: &out, epilogue: .identity, scratch: &scratch)
            XCTAssertEqual(Array(scratch[count...]), [Float](repeating: 7, count: 64), "\(cin)->\(cout)")
        }
        // The scratch depends on the channels, not on the image or batch.
        let small = try ConvolutionGeometry(batch: 1, height: 5, width: 5, inputChannels: 64, outputChannels: 64, kernel: 3, stride: 1, padding: 1)
        XCTAssertEqual(Winograd.scratchCount(small), Winograd.scratchCount(small.withBatch(8)))
        XCTAssertLessThanOrEqual(Winograd.scratchCount(small), 112 * 1024 + 64)
        XCTAssertTrue(Winograd.runs(small))
        XCTAssertFalse(Winograd.runs(try ConvolutionGeometry(batch: 1, height: 9, width: 9, inputChannels: 3, outputChannels: 8, kernel: 3, stride: 2, padding: 1)))
        XCTAssertFalse(Winograd.runs(try ConvolutionGeometry(batch: 1, height: 9, width: 9, inputChannels: 3, outputChannels: 8, kernel: 5, stride: 1, padding: 2)))
    }

    /// Runs Winograd against the reference on random data (``checkAgainstReference``).
    private func check(
        _ g: ConvolutionGeometry, epilogue: PackedEpilogue, accumulate: Bool, withBias: Bool, _ rng: inout SeededGenerator, label: String
    ) {
        // The transforms round at up to 8 times a value's scale: bounded relative to the outputs.
        checkAgainstReference(g, epilogue: epilogue, accumulate: accumulate, withBias: withBias, &rng,
                              tolerance: { 1e-5 * max(1, $0.map(abs).max()!) }, label) { input, weight, bias, slopes, output in
            let weights = WinogradWeights(weight: weight, inputChannels: g.inputChannels, outputChannels: g.outputChannels,
                                          bias: bias, slopes: slopes)
            var scratch = [Float](repeating: .nan, count: Winograd.scratchCount(g))
            Winograd.convolve(g, input: input, weights: weights, output: &output, accumulate: accumulate, epilogue: epilogue,
                              scratch: &scratch)
        }
    }
}
