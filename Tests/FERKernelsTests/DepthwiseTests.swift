import FERKernels
import XCTest

/// The SIMD depthwise kernel must agree with the plain loop at odd channel counts (vector body
/// and scalar tail), every kernel size the models use, both strides, padded and unpadded.
final class DepthwiseTests: XCTestCase {
    func testFastKernelMatchesReferenceForEveryKernelStrideAndOddChannelCount() {
        var rng = SeededGenerator(seed: 7)
        for kernel in [1, 3, 5, 7, 9] {
            for stride in [1, 2] {
                for channels in [1, 13, 8, 19, 37, 48] {
                    for (height, width) in [(14, 14), (7, 9), (11, 6)] where height + 2 * (kernel / 2) >= kernel {
                        // A channel range inside a wider tensor, as mixed depthwise layers use it.
                        let offset = channels % 3, stridec = channels + offset + 2
                        let g = DepthwiseGeometry.square(
                            batch: 2, height: height, width: width, channelStride: stridec, channelOffset: offset,
                            channels: channels, kernel: kernel, stride: stride)
                        check(g, &rng, label: "k\(kernel) s\(stride) c\(channels) \(height)x\(width)")
                    }
                }
            }
        }
    }

    func testUnpaddedRectangularKernelsAsInTheDDAMHeads() {
        var rng = SeededGenerator(seed: 11)
        for (kh, kw) in [(1, 7), (7, 1), (7, 7)] {
            let g = DepthwiseGeometry(
                batch: 3, height: 7, width: 7, channelStride: 21, channels: 21, kernelHeight: kh, kernelWidth: kw,
                stride: 1, padTop: 0, padLeft: 0)
            XCTAssertEqual(g.outHeight, 8 - kh)
            XCTAssertEqual(g.outWidth, 8 - kw)
            check(g, &rng, label: "\(kh)x\(kw)")
        }
    }

    func testPackingPutsEachTapsChannelsSideBySide() {
        // weight (channels 2, 1, 1, 2): channel 0 taps [1, 2], channel 1 taps [3, 4]
        XCTAssertEqual(Depthwise.pack(torchWeight: [1, 2, 3, 4], channels: 2, kernelHeight: 1, kernelWidth: 2), [1, 3, 2, 4])
    }

    private func check(_ g: DepthwiseGeometry, _ rng: inout SeededGenerator, label: String) {
        let input = (0..<g.batch * g.height * g.width * g.channelStride).map { _ in rng.nextFloat() }
        let weight = (0..<g.channels * g.kernelHeight * g.kernelWidth).map { _ in rng.nextFloat() }
        let bias = (0..<g.channels).map { _ in rng.nextFloat() }
        let outCount = g.batch * g.outHeight * g.outWidth * g.channelStride
        var expected = [Float](repeating: -99, count: outCount)
        Depthwise.convolveReference(g, input: input, torchWeight: weight, bias: bias, output: &expected)
        var actual = [Float](repeating: -99, count: outCount)
        let packed = Depthwise.pack(torchWeight: weight, channels: g.channels, kernelHeight: g.kernelHeight, kernelWidth: g.kernelWidth)
        Depthwise.convolve(g, input: input, weights: packed, bias: bias, output: &actual, kernel: .simd8)
        // Every kernel this machine runs gives the same floats (AVX-512: 16 channels a vector).
        for kernel in MicroKernel.available {
            var other = [Float](repeating: -99, count: outCount)
            Depthwise.convolve(g, input: input, weights: packed, bias: bias, output: &other, kernel: kernel)
            XCTAssertEqual(other, actual, "\(label) on \(kernel)")
        }
        var worst: Float = 0
        for i in 0..<outCount { worst = max(worst, abs(actual[i] - expected[i])) }
        XCTAssertLessThan(worst, 1e-4, label)
        // Channels outside the range are left untouched.
        XCTAssertEqual(actual.filter { $0 == -99 }.count, expected.filter { $0 == -99 }.count, label)

        // Output rows computed in three ranges over the batch (as threads share them) give the same floats.
        let rows = g.batch * g.outHeight
        var parts = [Float](repeating: -99, count: outCount)
        for range in [0..<rows / 3, rows / 3..<rows - 1, rows - 1..<rows] {
            Depthwise.convolve(g, input: input, weights: packed, bias: bias, output: &parts, rows: range)
        }
        XCTAssertEqual(parts, actual, "\(label), rows in three ranges")

        // Channels computed in ranges starting at multiples of 16 (as threads share them when the
        // pass pools as it goes) give the same floats, on every kernel, and touch nothing else.
        let cuts = [0, min(16, g.channels), min(32, g.channels), g.channels]
        for kernel in MicroKernel.available {
            var lanes = [Float](repeating: -99, count: outCount)
            for i in 0..<3 {
                Depthwise.convolve(g, input: input, weights: packed, bias: bias, output: &lanes, lanes: cuts[i]..<cuts[i + 1], kernel: kernel)
            }
            XCTAssertEqual(lanes, actual, "\(label), channels in three ranges on \(kernel)")
        }
    }
}

/// Deterministic values in [-1, 1) for kernel tests.
struct SeededGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
}
