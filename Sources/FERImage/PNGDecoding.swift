import CSpng

/// A decoding failure before the path is known; ``ImageDecoder`` attaches the path.
struct DecodeFailure: Error {
    var kind: ImageError.Kind
    init(_ kind: ImageError.Kind) { self.kind = kind }

    /// Runs `body`, whose closures lose the error type (the standard library's `withUnsafe...` rethrow
    /// untyped), and gives the failure its type back.
    static func typed<T>(_ body: () throws -> T) throws(DecodeFailure) -> T {
        do { return try body() } catch let failure as DecodeFailure { throw failure } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }
}

/// PNG through libspng, then PIL's conversion to 8-bit RGB.
///
/// File layout (big-endian throughout):
/// ```
/// 0   signature 89 50 4E 47 0D 0A 1A 0A
/// 8   u32 length (13)   12  "IHDR"   16  u32 width   20  u32 height
/// 24  u8 bit depth  25  u8 colour type  26 compression  27 filter  28 interlace   29  u32 CRC
/// 33  further chunks (PLTE, tRNS, IDAT..., IEND), each: u32 length, 4-byte type, data, u32 CRC
/// ```
/// The IHDR is read here first, so that a zero size or a decompression bomb is refused before libspng
/// allocates anything; then libspng decodes in `SPNG_FMT_RAW` (the samples as stored, big-endian,
/// sub-byte samples packed, Adam7 undone) without gamma or transparency, and the chunks after the image
/// data are read through IEND so that a cut file is never accepted.
enum PNGDecoding {
    static func decode(_ bytes: [UInt8], maxPixels: Int?) throws(DecodeFailure) -> (RGBImage, String) {
        // IHDR, checked by hand.
        guard bytes.count >= 33 else {
            throw DecodeFailure(.truncated(.png, detail: "the file ends at byte \(bytes.count), inside the IHDR header"))
        }
        guard readBE32(bytes, 8) == 13, bytes[12..<16].elementsEqual("IHDR".utf8) else {
            throw DecodeFailure(.corrupted(.png, detail: "the first chunk at byte 8 is not a 13-byte IHDR"))
        }
        let width = readBE32(bytes, 16), height = readBE32(bytes, 20)
        if width == 0 || height == 0 { throw DecodeFailure(.zeroSize(.png, width: width, height: height)) }
        // Widths and heights are u32 here (PNG allows 2^31 - 1, a hostile file says more): products may overflow.
        let (pixels, pixelsOverflow) = width.multipliedReportingOverflow(by: height)
        if let maxPixels, pixelsOverflow || pixels > maxPixels {
            throw DecodeFailure(.tooManyPixels(.png, width: width, height: height, limit: maxPixels))
        }
        // zlib cannot expand data more than about 1032 times, so the file must hold at least this much
        // for the declared size; a header promising more is cut short (or a bomb with a raised limit).
        let depthBits = max(Int(bytes[24]), 1)
        let channelsGuess = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(bytes[25])] ?? 1
        let rowBytes = 1 + (width * channelsGuess * depthBits + 7) / 8  // < 2^48, no overflow
        let (rawBytes, rawOverflow) = rowBytes.multipliedReportingOverflow(by: height)
        if rawOverflow || rawBytes / 1032 > bytes.count {
            throw DecodeFailure(.truncated(.png, detail: "the header declares \(width)x\(height) pixels, which needs "
                + "at least \(rawOverflow ? "exabytes" : "\(rawBytes / 1032) bytes") of compressed data, "
                + "but the file has \(bytes.count) bytes"))
        }

        guard let ctx = spng_ctx_new(0) else { throw DecodeFailure(.unreadable(reason: "libspng: out of memory")) }
        defer { spng_ctx_free(ctx) }
        return try DecodeFailure.typed { try bytes.withUnsafeBytes { raw -> (RGBImage, String) in
            try check(spng_set_png_buffer(ctx, raw.baseAddress, raw.count), "spng_set_png_buffer")
            // CRC errors are errors for every chunk (PIL raises on them too); ancillary chunks such as
            // iCCP or zTXt may not inflate past 64 MiB in total.
            try check(spng_set_crc_action(ctx, Int32(SPNG_CRC_ERROR.rawValue), Int32(SPNG_CRC_ERROR.rawValue)),
                      "spng_set_crc_action")
            try check(spng_set_chunk_limits(ctx, 1 << 26, 1 << 26), "spng_set_chunk_limits")
            var ihdr = spng_ihdr()
            try check(spng_get_ihdr(ctx, &ihdr), "reading the header")
            let fmt = Int32(SPNG_FMT_RAW.rawValue)
            var length = 0
            try check(spng_decoded_image_size(ctx, fmt, &length), "sizing the image")
            let depth = Int(ihdr.bit_depth), colourType = Int(ihdr.color_type)
            let channels: Int
            switch colourType {
            case 0, 3: channels = 1
            case 2: channels = 3
            case 4: channels = 2
            case 6: channels = 4
            default: throw DecodeFailure(.corrupted(.png, detail: "colour type \(colourType)"))
            }
            let stride = (width * channels * depth + 7) / 8
            guard length == stride * height else {
                throw DecodeFailure(.corrupted(.png, detail: "libspng reports \(length) bytes for \(width)x\(height)"))
            }
            var samples = [UInt8](repeating: 0, count: length)
            try samples.withUnsafeMutableBytes { out in
                try check(spng_decode_image(ctx, out.baseAddress, length, fmt, 0), "decoding the image data")
            }
            // Everything after the image data, through IEND; libspng stops at IEND's type without reading
            // its CRC, so the complete 12-byte IEND chunk (its CRC is always AE 42 60 82) is looked for too.
            try check(spng_decode_chunks(ctx), "reading the chunks after the image data")
            guard hasCompleteIEND(bytes) else {
                throw DecodeFailure(.truncated(.png, detail: "the file ends inside the final IEND chunk"))
            }

            var palette = [UInt8](repeating: 0, count: 256 * 3)  // RGB triples; entries past PLTE stay black
            if colourType == 3 {
                var plte = spng_plte()
                try check(spng_get_plte(ctx, &plte), "reading the palette")
                let count = min(Int(plte.n_entries), 256)
                withUnsafeBytes(of: &plte.entries) { entries in
                    // spng_plte_entry: red, green, blue, alpha (one byte each)
                    for i in 0..<count {
                        palette[i * 3] = entries[i * 4]
                        palette[i * 3 + 1] = entries[i * 4 + 1]
                        palette[i * 3 + 2] = entries[i * 4 + 2]
                    }
                }
            }
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            samples.withUnsafeBufferPointer { src in
                palette.withUnsafeBufferPointer { pal in
                    pixels.withUnsafeMutableBufferPointer { dst in
                        for y in 0..<height {
                            convertRow(src.baseAddress! + y * stride, dst.baseAddress! + y * width * 3, width: width,
                                       colourType: colourType, depth: depth, palette: pal.baseAddress!)
                        }
                    }
                }
            }
            let kinds = [0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"]
            var source = "\(depth)-bit \(kinds[colourType]!)"
            if ihdr.interlace_method != 0 { source += ", interlaced" }
            return (RGBImage(width: width, height: height, pixels: pixels), source)
        } }
    }

    /// One row of stored samples (`src`, big-endian, packed below 8 bits) to RGB8 (`dst`, width * 3), as PIL.
    @inline(__always)
    static func convertRow(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>, width: Int,
                           colourType: Int, depth: Int, palette: UnsafePointer<UInt8>) {
        switch (colourType, depth) {
        case (0, 8):
            for x in 0..<width { let v = src[x]; dst[3 * x] = v; dst[3 * x + 1] = v; dst[3 * x + 2] = v }
        case (0, 16):  // PIL mode I;16, convert('RGB') clips to 255
            for x in 0..<width {
                let v = UInt8(min(Int(src[2 * x]) << 8 | Int(src[2 * x + 1]), 255))
                dst[3 * x] = v; dst[3 * x + 1] = v; dst[3 * x + 2] = v
            }
        case (0, _):  // 1, 2, 4 bits: scaled to 0...255
            let scale = 255 / ((1 << depth) - 1)
            for x in 0..<width {
                let v = UInt8(truncatingIfNeeded: packedSample(src, x, depth) * scale)
                dst[3 * x] = v; dst[3 * x + 1] = v; dst[3 * x + 2] = v
            }
        case (3, _):
            for x in 0..<width {
                let i = depth == 8 ? Int(src[x]) : packedSample(src, x, depth)
                dst[3 * x] = palette[3 * i]; dst[3 * x + 1] = palette[3 * i + 1]; dst[3 * x + 2] = palette[3 * i + 2]
            }
        case (2, 8):
            (dst).update(from: src, count: width * 3)
        case (4, _), (2, _), (6, _):  // grey+alpha, 16-bit RGB, RGBA: first byte of each sample, alpha dropped
            let bytesPerSample = depth / 8
            let colours = colourType == 4 ? 1 : 3
            let step = (colourType == 2 ? 3 : colours + 1) * bytesPerSample
            for x in 0..<width {
                let p = src + x * step
                if colours == 1 {
                    let v = p[0]; dst[3 * x] = v; dst[3 * x + 1] = v; dst[3 * x + 2] = v
                } else {
                    dst[3 * x] = p[0]; dst[3 * x + 1] = p[bytesPerSample]; dst[3 * x + 2] = p[2 * bytesPerSample]
                }
            }
        default:
            preconditionFailure("colour type \(colourType) at \(depth) bits passed libspng")
        }
    }

    /// Sample `x` of a row packed at `depth` (1, 2 or 4) bits, most significant bits first.
    @inline(__always)
    static func packedSample(_ row: UnsafePointer<UInt8>, _ x: Int, _ depth: Int) -> Int {
        let bit = x * depth
        let shift = 8 - depth - (bit & 7)
        return Int(row[bit >> 3] >> UInt8(shift)) & ((1 << depth) - 1)
    }

    /// True when the bytes contain a whole IEND chunk: length 0, "IEND", CRC AE 42 60 82.
    static func hasCompleteIEND(_ bytes: [UInt8]) -> Bool {
        let iend: [UInt8] = [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]
        guard bytes.count >= 33 + 12 else { return false }
        var start = bytes.count - 12
        while start >= 33 {
            if bytes[start + 4] == 0x49 && bytes[start..<start + 12].elementsEqual(iend) { return true }
            start -= 1
        }
        return false
    }

    static func readBE32(_ bytes: [UInt8], _ offset: Int) -> Int {
        Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
    }

    /// Turns a libspng return code into nothing (0) or the matching failure.
    static func check(_ code: Int32, _ step: String) throws(DecodeFailure) {
        guard code != 0 else { return }
        let text = String(cString: spng_strerror(code))
        if code == Int32(SPNG_IO_EOF.rawValue) || code == Int32(SPNG_EOF.rawValue) {
            throw DecodeFailure(.truncated(.png, detail: "the file ends while \(step); libspng: \(text)"))
        }
        throw DecodeFailure(.corrupted(.png, detail: "\(step): libspng: \(text)"))
    }
}
