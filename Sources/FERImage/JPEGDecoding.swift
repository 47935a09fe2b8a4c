import CJPEG

/// JPEG through libjpeg-turbo's libjpeg API (the one PIL uses), then PIL's conversion to 8-bit RGB.
///
/// Stream layout (big-endian lengths):
/// ```
/// FF D8                       SOI
/// FF xx  u16 length  data     marker segments (APPn, DQT, DHT, SOFn, ...); length counts itself
/// FF C0..CF (not C4 C8 CC)    SOFn: u8 precision, u16 height, u16 width, u8 components Nf,
///                             then Nf x (u8 id, u8 sampling factors H << 4 | V, u8 table)
/// FF DA  u16 length  header   SOS, then entropy-coded data (FF stuffed as FF 00, restart markers FF D0..D7)
/// ...                         more tables and scans (a progressive file has one scan per SOS)
/// FF D9                       EOI
/// ```
/// Before libjpeg sees the data, the marker segments are walked here (bounds-checked): the SOF gives the
/// size, so that a zero size or a decompression bomb is refused before anything is allocated, and the SOS
/// markers are counted through to EOI, so that a file with more scans than
/// ``ImageDecodingOptions/maxJPEGScans`` is refused before any time is spent on them (each progressive scan
/// costs a pass over the whole image's coefficients).
///
/// Decoding uses the accurate integer IDCT and fancy upsampling (libjpeg's defaults, and PIL's) for every
/// chroma sampling libjpeg accepts: 4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1, and also 2x4, 4x2, 3x1 or different
/// factors per component, which TurboJPEG's API cannot express. A libjpeg warning (premature end of data,
/// corrupt entropy data) is an error rather than a silently grey- or garbage-filled image.
///
/// Memory: YCbCr, RGB and grey files are decoded a few rows at a time straight into the RGB result (libjpeg
/// converts grey to RGB by replication, as PIL's `convert('RGB')`); CMYK goes through one 4-sample row. So
/// a sequential JPEG costs its 8-bit RGB size plus libjpeg's few MCU rows. A progressive or multi-scan JPEG
/// also needs libjpeg's whole-image coefficient buffer (2 bytes per sample of each component, before
/// upsampling: 6 bytes a pixel at 4:4:4, 3 at 4:2:0), which is inherent to decoding it; its size is known
/// from the header (libjpeg's own block counts) and checked against
/// ``ImageDecodingOptions/maxJPEGCoefficientBytes`` before decompression starts, and all of these buffers
/// against ``MemoryHeadroom``.
enum JPEGDecoding {
    struct Frame {
        var width: Int, height: Int, components: Int, precision: Int, progressive: Bool, arithmetic: Bool
        /// (horizontal, vertical) sampling factors per component, in SOF order; empty when the SOF is cut.
        var sampling: [(h: Int, v: Int)]
        /// Offset just past the SOF segment.
        var end: Int
    }

    static func decode(_ bytes: [UInt8], maxPixels: Int?, maxScans: Int?,
                       maxCoefficientBytes: Int?) throws(DecodeFailure) -> (RGBImage, String) {
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
        if let maxScans {
            let scans = countScans(bytes, from: frame.end)
            if scans > maxScans {
                throw DecodeFailure(.limitExceeded(.jpeg, limit: .jpegScans(maxScans), detail:
                    "the file has \(scans) scans (SOS markers)\(frame.progressive ? "" : " in a sequential frame")"))
            }
        }

        guard let decoder = fer_jpeg_create() else {
            throw DecodeFailure(.unreadable(reason: "libjpeg-turbo: out of memory creating a decompressor"))
        }
        defer { fer_jpeg_destroy(decoder) }
        return try DecodeFailure.typed { try bytes.withUnsafeBufferPointer { buf -> (RGBImage, String) in
            var info = fer_jpeg_info()
            if fer_jpeg_read_header(decoder, buf.baseAddress, buf.count, &info) != 0 {
                throw failure(decoder, bytes, step: "reading the header")
            }
            guard Int(info.width) == frame.width, Int(info.height) == frame.height else {
                throw DecodeFailure(.corrupted(.jpeg, detail:
                    "libjpeg reads \(info.width)x\(info.height), the SOF says \(frame.width)x\(frame.height)"))
            }
            let w = frame.width, h = frame.height
            var source: String
            let cmyk: Bool
            switch Int(info.color_space) {
            case FER_JPEG_GRAYSCALE: cmyk = false; source = "grey"
            case FER_JPEG_RGB: cmyk = false; source = "RGB"
            case FER_JPEG_YCBCR: cmyk = false; source = samplingName(frame.sampling) + " YCbCr"
            case FER_JPEG_CMYK: cmyk = true; source = "CMYK"
            case FER_JPEG_YCCK: cmyk = true; source = "YCCK (CMYK)"
            default:
                throw DecodeFailure(.unsupported(.jpeg, detail: "\(info.components) components in an unknown colour space"))
            }
            if frame.progressive { source = "progressive, " + source }
            if frame.arithmetic { source = "arithmetic-coded, " + source }
            try checkMemory(info, cmyk: cmyk, maxCoefficientBytes: maxCoefficientBytes)

            let output = Int32(cmyk ? FER_JPEG_CMYK : FER_JPEG_RGB)
            if fer_jpeg_start(decoder, output) != 0 { throw failure(decoder, bytes, step: "starting decompression") }

            // Uninitialised, so that pages are only touched as rows arrive (a file that ends early costs
            // only what was decoded before the error).
            let pixels = try [UInt8](unsafeUninitializedCapacity: w * h * 3) { out, initialized in  // (h, w, 3)
                let rgb = out.baseAddress!
                if cmyk {
                    let row = UnsafeMutablePointer<UInt8>.allocate(capacity: w * 4)  // (w, 4) as stored
                    defer { row.deallocate() }
                    for y in 0..<h {
                        _ = try readRows(decoder, bytes, into: row, stride: w * 4, count: 1)
                        let dst = rgb + y * w * 3
                        for x in 0..<w { cmykToRGB(row + 4 * x, dst + 3 * x) }
                    }
                } else {
                    var y = 0
                    while y < h {
                        y += try readRows(decoder, bytes, into: rgb + y * w * 3, stride: w * 3, count: min(16, h - y))
                    }
                }
                initialized = w * h * 3
            }
            if fer_jpeg_finish(decoder) != 0 { throw failure(decoder, bytes, step: "reading the end of the file") }
            return (RGBImage(width: w, height: h, pixels: pixels), source)
        } }
    }

    /// Refuses, before libjpeg allocates it, a coefficient buffer over `maxCoefficientBytes`, and buffers
    /// (the coefficients, the RGB result, a CMYK row) that this process could not allocate.
    static func checkMemory(_ info: fer_jpeg_info, cmyk: Bool, maxCoefficientBytes: Int?) throws(DecodeFailure) {
        let w = Int(info.width), h = Int(info.height)
        let coefficients = Int(clamping: info.coefficient_bytes)
        if let maxCoefficientBytes, coefficients > maxCoefficientBytes {
            throw DecodeFailure(.limitExceeded(.jpeg, limit: .jpegCoefficientBytes(maxCoefficientBytes), detail:
                "a \(info.progressive != 0 ? "progressive" : "multi-scan") \(w)x\(h) image with \(info.components) "
                + "components needs \(coefficients) bytes of coefficients besides its \(w * h * 3)-byte RGB result"))
        }
        let needed = coefficients + w * h * 3 + (cmyk ? w * 4 : 0)
        if let available = MemoryHeadroom.shortfall(needing: needed) {
            throw DecodeFailure(.notEnoughMemory(.jpeg, needed: needed, available: available, what: coefficients > 0
                ? "the \(w)x\(h) RGB pixels and libjpeg's coefficient buffer" : "the \(w)x\(h) RGB pixels"))
        }
    }

    /// Decodes between 1 and `count` rows into `out` (rows `stride` bytes apart); returns how many.
    static func readRows(_ decoder: OpaquePointer, _ bytes: [UInt8], into out: UnsafeMutablePointer<UInt8>,
                         stride: Int, count: Int) throws(DecodeFailure) -> Int {
        var read: UInt32 = 0
        if fer_jpeg_read_rows(decoder, out, stride, UInt32(count), &read) != 0 {
            throw failure(decoder, bytes, step: "decoding")
        }
        // With the whole file in memory libjpeg never suspends, so no progress means a broken promise.
        guard read > 0 else { throw DecodeFailure(.corrupted(.jpeg, detail: "decoding: libjpeg returned no rows")) }
        return Int(read)
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

    /// "4:2:0" and the like when the two chroma components share factors that divide luma's; otherwise the
    /// factors of each component as cjpeg's `-sample` writes them ("2x4,1x1,1x1", "2x2,1x2,2x1").
    static func samplingName(_ sampling: [(h: Int, v: Int)]) -> String {
        guard sampling.count == 3 else { return "subsampled" }
        let (y, cb, cr) = (sampling[0], sampling[1], sampling[2])
        if cb == cr, cb.h > 0, cb.v > 0, y.h % cb.h == 0, y.v % cb.v == 0 {
            switch (y.h / cb.h, y.v / cb.v) {
            case (1, 1): return "4:4:4"
            case (2, 1): return "4:2:2"
            case (2, 2): return "4:2:0"
            case (1, 2): return "4:4:0"
            case (4, 1): return "4:1:1"
            case (1, 4): return "4:4:1"
            default: break
            }
        }
        return sampling.map { "\($0.h)x\($0.v)" }.joined(separator: ",")
    }

    /// The failure for a libjpeg error or warning: truncated when libjpeg met the end of the data early or
    /// the file lacks its EOI marker, corrupted otherwise.
    static func failure(_ decoder: OpaquePointer, _ bytes: [UInt8], step: String) -> DecodeFailure {
        let text = String(cString: fer_jpeg_message(decoder))
        let warning = fer_jpeg_failed_on_warning(decoder) != 0
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
                let p = offset + 2  // precision, height (2), width (2), components, then 3 bytes a component
                let components = Int(bytes[p + 5])
                var sampling: [(h: Int, v: Int)] = []
                if length >= 8 + 3 * components && p + 6 + 3 * components <= bytes.count {
                    for c in 0..<components {
                        let factors = bytes[p + 6 + 3 * c + 1]
                        sampling.append((h: Int(factors >> 4), v: Int(factors & 0x0F)))
                    }
                }
                return Frame(width: Int(bytes[p + 3]) << 8 | Int(bytes[p + 4]),
                             height: Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]),
                             components: components, precision: Int(bytes[p]),
                             progressive: [0xC2, 0xC6, 0xCA, 0xCE].contains(marker),
                             arithmetic: marker >= 0xC9, sampling: sampling, end: offset + length)
            }
            offset += length
        }
    }

    /// The number of SOS markers from `start` (just past the frame header) to EOI, read as libjpeg reads
    /// the stream: marker segments skipped by their declared lengths (a length below 2 skips only itself,
    /// as libjpeg's skip does), the entropy-coded data after each SOS header skipped to the next marker
    /// that is neither `FF 00` stuffing nor a restart marker. Stops early, without judging, at anything
    /// libjpeg would stop at (a cut, bytes where a marker belongs, a second SOI): damage is libjpeg's to
    /// report. Linear in the file size, with no allocation.
    static func countScans(_ bytes: [UInt8], from start: Int) -> Int {
        var scans = 0
        var p = start
        let n = bytes.count
        while p < n {
            guard bytes[p] == 0xFF else { return scans }
            while p < n && bytes[p] == 0xFF { p += 1 }
            guard p < n else { return scans }
            let marker = bytes[p]
            p += 1
            switch marker {
            case 0xD9, 0xD8, 0x00: return scans  // EOI; a second SOI or FF 00 here stops libjpeg too
            case 0x01, 0xD0...0xD7: continue  // no length
            default: break
            }
            guard p + 2 <= n else { return scans }
            p += max(Int(bytes[p]) << 8 | Int(bytes[p + 1]), 2)
            guard marker == 0xDA else { continue }
            scans += 1
            while p + 1 < n {
                if bytes[p] == 0xFF {
                    let next = bytes[p + 1]
                    if next != 0x00 && next != 0xFF && !(0xD0...0xD7).contains(next) { break }
                    p += next == 0xFF ? 1 : 2
                } else {
                    p += 1
                }
            }
            if p + 1 >= n { return scans }
        }
        return scans
    }
}
