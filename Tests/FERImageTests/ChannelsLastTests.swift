import FERImage
import FERTensor
import XCTest

/// Images stay channel-last from the decoder to the engine: the channel-last preprocessing is
/// the channel-first one (the authors' ToTensor + Normalize) with the axes moved, value for value.
final class ChannelsLastTests: XCTestCase {
    func testChannelLastPreprocessingIsTheTransposedPyTorchLayout() {
        var state: UInt32 = 7
        let pixels = (0..<(131 * 97 * 3)).map { _ -> UInt8 in
            state = state &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: state >> 16)
        }
        let image = RGBImage(width: 131, height: 97, pixels: pixels)
        let first = Preprocessing.modelInput(image)
        let last = Preprocessing.modelInputChannelsLast(image)
        XCTAssertEqual(last.shape, [112, 112, 3])
        XCTAssertEqual(last, first.channelsLast())
        let batch = Preprocessing.batchChannelsLast([image, image])
        XCTAssertEqual(batch.shape, [2, 112, 112, 3])
        XCTAssertEqual(batch.slice(1), last)
    }

    func testChannelOrderMovesEveryValueBothWaysForThreeChannelsAndOthers() {
        for channels in [1, 2, 3, 5] {
            let (batch, positions) = (2, 7)
            let count = batch * channels * positions
            let first = (0..<count).map(Float.init)
            var last = [Float](repeating: -1, count: count), back = last
            ChannelOrder.toChannelsLast(first, &last, batch: batch, channels: channels, positions: positions)
            for b in 0..<batch {
                for c in 0..<channels {
                    for p in 0..<positions {
                        XCTAssertEqual(last[(b * positions + p) * channels + c], first[(b * channels + c) * positions + p], "\(channels) channels")
                    }
                }
            }
            ChannelOrder.toChannelsFirst(last, &back, batch: batch, channels: channels, positions: positions)
            XCTAssertEqual(back, first, "\(channels) channels")
        }
    }

    func testTheInputShapeCheckKnowsBothLayouts() {
        XCTAssertEqual(ModelInput.batchCount(of: [5, 3, 112, 112]), 5)
        XCTAssertEqual(ModelInput.batchCount(of: [3, 112, 112]), 1)
        XCTAssertNil(ModelInput.batchCount(of: [5, 112, 112, 3]))
        XCTAssertEqual(ModelInput.batchCount(of: [5, 112, 112, 3], channelsLast: true), 5)
        XCTAssertNil(ModelInput.batchCount(of: [0, 3, 112, 112]))
        XCTAssertNil(ModelInput.batchCount(of: [1, 3, 112, 111]))
    }
}
