import CABICheck
import FERRuntime
import Foundation
import XCTest

/// The C ABI, used from C (Tests/CABICheck/check.c): results equal the Swift API's, every error
/// path returns a code and a message, and 8 C threads agree with the sequential run.
final class CABITests: XCTestCase {
    func testACProgramGetsTheSwiftAPIsResultsAndClearErrors() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let weights = root.appendingPathComponent("weights/lfnsb7-seeded.pth").path
        let samplePath = root.appendingPathComponent(".downloads/samples/Tom_Hanks_54745.png").path
        guard let png = FileManager.default.contents(atPath: samplePath) else {
            throw XCTSkip("\(samplePath) is missing: run tools/setup")
        }
        let decoded = try ImageDecoder.decode(bytes: [UInt8](png))
        var logits = [Float](repeating: 0, count: 7), rgbLogits = [Float](repeating: 0, count: 7)
        var message = [CChar](repeating: 0, count: 512)
        let status = [UInt8](png).withUnsafeBufferPointer { bytes in
            decoded.image.pixels.withUnsafeBufferPointer { rgb in
                fer_c_abi_check(weights, bytes.baseAddress, bytes.count, rgb.baseAddress,
                                Int32(decoded.image.width), Int32(decoded.image.height), &logits, &rgbLogits, &message, message.count)
            }
        }
        XCTAssertEqual(status, 0, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let swift = try FERClassifier(contentsOf: weights).classify(encoded: [UInt8](png))
        XCTAssertEqual(logits, swift.logits)
        XCTAssertEqual(rgbLogits, swift.logits)
    }
}
