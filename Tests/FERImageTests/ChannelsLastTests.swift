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

    func testTheInputShapeCheckKnowsBothLayouts() {
        XCTAssertEqual(ModelInput.batchCount(of: [5, 3, 112, 112]), 5)
        XCTAssertEqual(ModelInput.batchCount(of: [3, 112, 112]), 1)
        XCTAssertNil(ModelInput.batchCount(of: [5, 112, 112, 3]))
        XCTAssertEqual(ModelInput.batchCount(of: [5, 112, 112, 3], channelsLast: true), 5)
        XCTAssertNil(ModelInput.batchCount(of: [0, 3, 112, 112]))
        XCTAssertNil(ModelInput.batchCount(of: [1, 3, 112, 111]))
    }
}
