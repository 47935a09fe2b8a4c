// libFuzzer entry point over image decoding, on the path the CLI and FERClassifier take:
// ImageDecoder.decode(bytes:) (format detection, libspng or libjpeg through CJPEG, conversion to RGB),
// then Preprocessing.batchChannelsLast (the 112x112 PIL bilinear resize and torchvision's normalisation).
// Compiled together with the sources of Sources/FERImage into one module (see build-image.sh).
//
// The input's first byte is a switch, the rest the file:
//   even: the bytes as they are
//   odd:  for a PNG, every chunk's CRC recomputed first, so that mutations reach libspng's chunk parsing,
//         inflating and unfiltering instead of stopping at the checksum (JPEG has no checksum: as they are)
// Any thrown ImageError is an acceptable outcome; a crash, hang, sanitizer report or out-of-memory is not.

import CZlib

/// The decoder's options, with a lower pixel limit (2^20, PIL's is 89,478,485) so that each execution
/// stays fast under AddressSanitizer; every check is the same, with a smaller number.
let fuzzOptions = ImageDecodingOptions(maxPixels: 1 << 20)

/// Rewrites the CRC of every whole chunk after the 8-byte signature, in place.
func fixPNGChecksums(_ bytes: inout [UInt8]) {
    var p = 8
    while p + 12 <= bytes.count {
        let length = Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
        guard length <= bytes.count - p - 12 else { return }
        let crc = bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress! + p + 4, UInt32(4 + length))) }
        for i in 0..<4 { bytes[p + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i)) }
        p += 12 + length
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if data[0] & 1 == 1 && ImageDecoder.detectFormat(bytes) == .png { fixPNGChecksums(&bytes) }
    guard let decoded = try? ImageDecoder.decode(bytes: bytes, path: "fuzz", options: fuzzOptions) else { return 0 }
    let image = decoded.image
    precondition(image.width > 0 && image.height > 0 && image.width * image.height <= 1 << 20,
                 "accepted \(image.width)x\(image.height) over the pixel limit")
    let batch = Preprocessing.batchChannelsLast([image])
    precondition(batch.shape == [1, 112, 112, 3], "model input \(batch.shape)")
    precondition(batch.data.allSatisfy { $0.isFinite }, "non-finite model input")
    return 0
}
