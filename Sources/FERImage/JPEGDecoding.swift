import CTurboJPEG

/// JPEG through libjpeg-turbo's TurboJPEG API, then PIL's conversion to 8-bit RGB.
///
/// Stream layout (big-endian lengths):
/// ```
/// FF D8                       SOI
/// FF xx  u16 length  data     marker segments (APPn, DQT, DHT, SOFn, ...); length counts itself
/// FF C0..CF (not C4 C8 CC)    SOFn: u8 precision, u16 height, u16 width, u8 components, ...
/// FF DA  ...  entropy-coded data (FF stuffed as FF 00, restart markers FF D0..D7)
/// FF D9                       EOI
/// ```
/// The SOF is found here first (bounds-checked walk of the marker segments), so that a zero size or a
/// decompression bomb is refused before TurboJPEG allocates anything. Decoding uses TurboJPEG's defaults,
/// which are PIL's (accurate integer IDCT, fancy upsampling), with `TJFLAG_STOPONWARNING` so that a
/// warning (a premature end of data, corrupt entropy data) is an error rather than a silently grey- or
/// garbage-filled image, and `TJFLAG_LIMITSCANS` (at most 500 progressive scans), so that no crafted
/// file can make decoding take unbounded time.
enum JPEGDecoding {
    struct Frame {
        var width: Int, height: Int, components: Int, precision: Int, progressive: Bool, arithmetic: Bool
    }

    static func decode(_ bytes: [UInt8], maxPixels: Int?) throws(DecodeFailure) -> (RGBImage, String) {
        let frame = try readFrame(bytes)
        if frame.width == 0 || frame.height == 0 {
            throw DecodeFailure(.zeroSize(.jpeg, width: frame.width, height: frame.height))
        }
        if let maxPixels, frame.width * frame.height > maxPixels {
            throw DecodeFailure(.tooManyPixels(.jpeg, width: frame.width, height: frame.height, limit: maxPixels))
        }
        guard frame.precision == 8 else {
            throw DecodeFailure(.unsupported(.jpeg, detail: "\(frame.precision)-bit samples; only 8-bit JPEG is read"))
        }
        guard frame.components == 1 || frame.components == 3 || frame.components == 4 else {
            throw DecodeFailure(.unsupported(.jpeg, detail: "\(frame.components) colour components"))
        }

        guard let handle = tjInitDecompress() else {
            throw DecodeFailure(.unreadable(reason: "TurboJPEG: cannot create a decompressor"))
        }
        defer { tjDestroy(handle) }
        return try DecodeFailure.typed { try bytes.withUnsafeBufferPointer { buf -> (RGBImage, String) in
            let base = buf.baseAddress!
            let size = UInt(buf.count)
            var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colourspace: Int32 = 0
            if tjDecompressHeader3(handle, base, size, &width, &height, &subsampling, &colourspace) != 0 {
                throw failure(handle, bytes, step: "reading the header")
            }
            guard Int(width) == frame.width, Int(height) == frame.height else {
                throw DecodeFailure(.corrupted(.jpeg, detail:
                    "TurboJPEG reads \(width)x\(height), the SOF says \(frame.width)x\(frame.height)"))
            }
            let w = Int(width), h = Int(height)
            let pixelFormat: TJPF
            let channels: Int
            var source: String
            switch Int(colourspace) {
            case Int(TJCS_GRAY.rawValue):
                pixelFormat = TJPF_GRAY; channels = 1; source = "grey"
            case Int(TJCS_CMYK.rawValue), Int(TJCS_YCCK.rawValue):
                pixelFormat = TJPF_CMYK; channels = 4
                source = colourspace == Int32(TJCS_YCCK.rawValue) ? "YCCK (CMYK)" : "CMYK"
            default:
                pixelFormat = TJPF_RGB; channels = 3
                let names = [Int32(TJSAMP_444.rawValue): "4:4:4", Int32(TJSAMP_422.rawValue): "4:2:2",
                             Int32(TJSAMP_420.rawValue): "4:2:0", Int32(TJSAMP_440.rawValue): "4:4:0",
                             Int32(TJSAMP_411.rawValue): "4:1:1"]
                source = colourspace == Int32(TJCS_RGB.rawValue) ? "RGB" : "\(names[subsampling] ?? "subsampled") YCbCr"
            }
            if frame.progressive { source = "progressive, " + source }
            if frame.arithmetic { source = "arithmetic-coded, " + source }

            var decoded = [UInt8](repeating: 0, count: w * h * channels)
            let flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS
            let code = decoded.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, base, size, out.baseAddress, width, Int32(w * channels), height,
                              Int32(pixelFormat.rawValue), Int32(flags))
            }
            if code != 0 { throw failure(handle, bytes, step: "decoding") }

            if channels == 3 { return (RGBImage(width: w, height: h, pixels: decoded), source) }
            var pixels = [UInt8](repeating: 0, count: w * h * 3)
            decoded.withUnsafeBufferPointer { src in
                pixels.withUnsafeMutableBufferPointer { dst in
                    let s = src.baseAddress!, d = dst.baseAddress!
                    if channels == 1 {
                        for i in 0..<w * h { let v = s[i]; d[3 * i] = v; d[3 * i + 1] = v; d[3 * i + 2] = v }
                    } else {
                        for i in 0..<w * h { cmykToRGB(s + 4 * i, d + 3 * i) }
                    }
                }
            }
            return (RGBImage(width: w, height: h, pixels: pixels), source)
        } }
    }

    /// PIL's CMYK JPEG path for one pixel: libjpeg's CMYK (as stored) is inverted ("Adobe conventions",
    /// rawmode `CMYK;I`), then `convert('RGB')` computes, with nk = 255 - K,
    /// `R = nk - round(C * nk / 255)` where the rounded product is `(t + (t >> 8)) >> 8`, t = C * nk + 128
    /// (likewise G from M, B from Y). Checked against Pillow for all 65,536 (C, K) pairs.
    @inline(__always)
    static func cmykToRGB(_ stored: UnsafePointer<UInt8>, _ rgb: UnsafeMutablePointer<UInt8>) {
        let nk = Int(stored[3])  // 255 - (255 - stored K)
        for c in 0..<3 {
            let t = (255 - Int(stored[c])) * nk + 128
            rgb[c] = UInt8(nk - ((t + (t >> 8)) >> 8))
        }
    }

    /// The failure for a non-zero TurboJPEG return: truncated when libjpeg met the end of the data early
    /// or the file lacks its EOI marker, corrupted otherwise.
    static func failure(_ handle: tjhandle, _ bytes: [UInt8], step: String) -> DecodeFailure {
        let text = String(cString: tjGetErrorStr2(handle))
        let warning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
        let endsWithEOI = bytes.count >= 2 && bytes[bytes.count - 2] == 0xFF && bytes[bytes.count - 1] == 0xD9
        let detail = "\(step): libjpeg-turbo \(warning ? "warning" : "error"): \(text)"
        if text.contains("Premature end") || !endsWithEOI {
            return DecodeFailure(.truncated(.jpeg, detail: endsWithEOI ? detail : "no end-of-image marker; " + detail))
        }
        return DecodeFailure(.corrupted(.jpeg, detail: detail))
    }

    /// Walks the marker segments from SOI to the first SOFn and reads the frame header.
    static func readFrame(_ bytes: [UInt8]) throws(DecodeFailure) -> Frame {
        func cut(_ what: String) -> DecodeFailure {
            DecodeFailure(.truncated(.jpeg, detail: "the file ends at byte \(bytes.count), \(what)"))
        }
        func bad(_ what: String) -> DecodeFailure { DecodeFailure(.corrupted(.jpeg, detail: what)) }
        func hex(_ byte: UInt8) -> String { "0x" + String(byte, radix: 16, uppercase: true) }

        var offset = 2  // after FF D8
        while true {
            // A marker: one or more FF fill bytes, then the code.
            guard offset < bytes.count else { throw cut("before the frame header (SOF)") }
            guard bytes[offset] == 0xFF else { throw bad("expected a marker at byte \(offset), found \(hex(bytes[offset]))") }
            while offset < bytes.count && bytes[offset] == 0xFF { offset += 1 }
            guard offset < bytes.count else { throw cut("inside a marker") }
            let marker = bytes[offset]
            let markerOffset = offset - 1
            offset += 1
            switch marker {
            case 0x01, 0xD0...0xD7: continue  // no length
            case 0xD8: throw bad("a second start-of-image marker at byte \(markerOffset)")
            case 0xD9, 0xDA:
                throw bad("marker 0xFF\(hex(marker).dropFirst(2)) at byte \(markerOffset) comes before any frame header (SOF)")
            default: break
            }
            guard offset + 2 <= bytes.count else { throw cut("inside the segment at byte \(markerOffset)") }
            let length = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            guard length >= 2 else { throw bad("segment at byte \(markerOffset) declares length \(length)") }
            let isSOF = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isSOF {
                guard length >= 8 else { throw bad("frame header at byte \(markerOffset) declares length \(length)") }
                guard offset + 8 <= bytes.count else { throw cut("inside the frame header") }
                let p = offset + 2  // precision, height (2), width (2), components
                return Frame(width: Int(bytes[p + 3]) << 8 | Int(bytes[p + 4]),
                             height: Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]),
                             components: Int(bytes[p + 5]), precision: Int(bytes[p]),
                             progressive: [0xC2, 0xC6, 0xCA, 0xCE].contains(marker),
                             arithmetic: marker >= 0xC9)
            }
            offset += length
        }
    }
}
