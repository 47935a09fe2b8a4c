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

/// libspng's chunk limits as this decoder sets them. Image data (IDAT) is not limited by them (the pixel
/// limit bounds it), and unknown chunks are skipped without being kept.
public enum PNGLimits {
    /// Largest ancillary chunk libspng keeps (tEXt, zTXt, iTXt, iCCP, eXIf, sPLT), in bytes: 64 MiB.
    public static let chunkBytes = 1 << 26
    /// Ancillary chunk data libspng keeps in all, counted after decompression, in bytes: 64 MiB.
    public static let chunkCacheBytes = 1 << 26
    /// Text and sPLT chunks libspng keeps: 1000, libspng's built-in SPNG_MAX_CHUNK_COUNT (0.7.3 cannot
    /// change it: its spng_set_option refuses SPNG_CHUNK_COUNT_LIMIT), checked by the tests.
    public static let chunkCount = 1000
    /// Largest row as stored (before conversion to 8-bit RGB), in bytes: 16 MiB. libspng holds one
    /// whole row, so without it a one-row image costs up to 8 bytes a pixel on top of its RGB size (a
    /// 89,478,485 x 1 16-bit RGBA file: 716 MB). 16 MiB is 2 million 16-bit RGBA or 5.5 million 8-bit
    /// RGB pixels across, far wider than any photograph.
    public static let rowBytes = 1 << 24
}

/// PNG through libspng's progressive (row) API, converted to 8-bit RGB as PIL does.
///
/// File layout (big-endian throughout):
/// ```
/// 0   signature 89 50 4E 47 0D 0A 1A 0A
/// 8   u32 length (13)   12  "IHDR"   16  u32 width   20  u32 height
/// 24  u8 bit depth  25  u8 colour type  26 compression  27 filter  28 interlace   29  u32 CRC
/// 33  further chunks (PLTE, tRNS, IDAT..., IEND), each: u32 length, 4-byte type, data, u32 CRC
/// ```
/// The IHDR is read here first, so that a zero size or a decompression bomb is refused before libspng
/// allocates anything. Then libspng decodes one scanline at a time, converting it itself to RGB8 (which is
/// PIL's conversion for every colour type but 16-bit grey: the high byte of 16-bit samples, sub-byte grey
/// scaled by bit replication, which is v * 255 / (2^bits - 1), palette indices past the PLTE black, and no
/// tRNS, gamma or sBIT, since none of their flags is passed). 16-bit grey comes as stored and is clipped
/// here (PIL's `I;16` to RGB), except with ``PixelReading/opencv``, where libspng's high byte is OpenCV's.
/// A non-interlaced RGB8 row is written straight into the result; a row of an Adam7 pass, or of 16-bit
/// grey, goes through one row buffer and is placed pixel by pixel. The buffers are checked against
/// ``MemoryHeadroom`` before they are made.
///
/// Memory: the RGB result (3 bytes a pixel, its pages touched only as rows arrive), one row buffer of at most
/// 3 bytes a pixel of width, and libspng's current and previous scanline as stored (up to 8 bytes a pixel
/// of width each; the previous one is only touched from the second row, or for a first row filtered Up,
/// Average or Paeth). A 1 x 89,478,485 16-bit RGBA image costs 268 MB (it cost 957 MB decoded whole); an
/// 89,478,485 x 1 one 984 MB (1.64 GB), of which 716 MB is libspng's one stored scanline.
/// The chunks after the image data are read through IEND so that a cut file is never accepted.
enum PNGDecoding {
    /// Adam7: first column and column step of each pass (rows: `adam7YStart`, `adam7YDelta`).
    static let adam7XStart = [0, 4, 0, 2, 0, 1, 0], adam7XDelta = [8, 8, 4, 4, 2, 2, 1]
    static let adam7YStart = [0, 0, 4, 0, 2, 0, 1], adam7YDelta = [8, 8, 8, 4, 4, 2, 2]

    static func decode(_ bytes: [UInt8], maxPixels: Int?, reading: PixelReading) throws(DecodeFailure) -> (RGBImage, String) {
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

        if rowBytes - 1 > PNGLimits.rowBytes {
            throw DecodeFailure(.limitExceeded(.png, limit: .pngRowBytes(PNGLimits.rowBytes), detail:
                "a row of \(width) pixels of \(channelsGuess) \(depthBits)-bit samples is \(rowBytes - 1) bytes"))
        }

        guard let ctx = spng_ctx_new(0) else { throw DecodeFailure(.unreadable(reason: "libspng: out of memory")) }
        defer { spng_ctx_free(ctx) }
        func check(_ code: Int32, _ step: String) throws(DecodeFailure) {
            try PNGDecoding.check(code, step, bytes)
        }
        return try DecodeFailure.typed { try bytes.withUnsafeBytes { raw -> (RGBImage, String) in
            try check(spng_set_png_buffer(ctx, raw.baseAddress, raw.count), "spng_set_png_buffer")
            // CRC errors are errors for every chunk (PIL raises on them too); ancillary chunks such as
            // iCCP or zTXt may not inflate past 64 MiB in total (PNGLimits).
            try check(spng_set_crc_action(ctx, Int32(SPNG_CRC_ERROR.rawValue), Int32(SPNG_CRC_ERROR.rawValue)),
                      "spng_set_crc_action")
            try check(spng_set_chunk_limits(ctx, PNGLimits.chunkBytes, PNGLimits.chunkCacheBytes), "spng_set_chunk_limits")
            var ihdr = spng_ihdr()
            try check(spng_get_ihdr(ctx, &ihdr), "reading the header")
            let depth = Int(ihdr.bit_depth), colourType = Int(ihdr.color_type)
            guard [0, 2, 3, 4, 6].contains(colourType) else {
                throw DecodeFailure(.corrupted(.png, detail: "colour type \(colourType)"))
            }
            let interlaced = ihdr.interlace_method != 0
            // PIL clips 16-bit grey; libspng's RGB8 takes the high byte, as OpenCV does.
            let grey16 = colourType == 0 && depth == 16 && reading == .pil
            let fmt = Int32(grey16 ? SPNG_FMT_RAW.rawValue : SPNG_FMT_RGB8.rawValue)
            let pixelBytes = grey16 ? 2 : 3  // per pixel of a decoded row
            try check(spng_decode_image(ctx, nil, 0, fmt, Int32(SPNG_DECODE_PROGRESSIVE.rawValue)),
                      "decoding the image data")

            // Scanlines libspng will give: one per row, or one per row of each non-empty Adam7 pass.
            let direct = !interlaced && !grey16
            var expectedRows = height
            if interlaced {
                expectedRows = 0
                for p in 0..<7 where passWidth(width, p) > 0 {
                    expectedRows += (height - adam7YStart[p] + adam7YDelta[p] - 1) / adam7YDelta[p]
                }
            }
            let buffers = width * height * 3 + (direct ? 0 : width * pixelBytes) + 2 * (rowBytes - 1)
            if let available = MemoryHeadroom.shortfall(needing: buffers) {
                throw DecodeFailure(.notEnoughMemory(.png, needed: buffers, available: available,
                                                     what: "the \(width)x\(height) RGB pixels and the row buffers"))
            }
            let pixels = try [UInt8](unsafeUninitializedCapacity: width * height * 3) { out, initialized in
                let rgb = out.baseAddress!  // (height, width, 3)
                let row: UnsafeMutablePointer<UInt8>? = direct ? nil : .allocate(capacity: width * pixelBytes)
                defer { row?.deallocate() }
                var rowsDecoded = 0
                while true {
                    var info = spng_row_info()
                    let status = spng_get_row_info(ctx, &info)
                    if status == Int32(SPNG_EOI.rawValue) { break }
                    try check(status, "decoding the image data")
                    let y = Int(info.row_num), pass = interlaced ? Int(info.pass) : 0
                    guard y < height, (0..<7).contains(pass), rowsDecoded < expectedRows else {
                        throw DecodeFailure(.corrupted(.png, detail:
                            "libspng reports row \(y) of pass \(pass) after \(rowsDecoded) rows of \(width)x\(height)"))
                    }
                    let (x0, dx) = interlaced ? (adam7XStart[pass], adam7XDelta[pass]) : (0, 1)
                    let count = passWidth(width, interlaced ? pass : 6)
                    let code = spng_decode_scanline(ctx, row ?? rgb + y * width * 3, count * pixelBytes)
                    if code != Int32(SPNG_EOI.rawValue) { try check(code, "decoding the image data") }
                    rowsDecoded += 1
                    guard let row else { continue }
                    let dst = rgb + y * width * 3
                    if grey16 {
                        for k in 0..<count {  // PIL mode I;16, convert('RGB') clips to 255
                            let v = UInt8(min(Int(row[2 * k]) << 8 | Int(row[2 * k + 1]), 255))
                            let x = x0 + k * dx
                            dst[3 * x] = v; dst[3 * x + 1] = v; dst[3 * x + 2] = v
                        }
                    } else {
                        for k in 0..<count {
                            let x = x0 + k * dx
                            dst[3 * x] = row[3 * k]; dst[3 * x + 1] = row[3 * k + 1]; dst[3 * x + 2] = row[3 * k + 2]
                        }
                    }
                }
                // Every pixel is written exactly once when every scanline was (Adam7's passes tile the image).
                guard rowsDecoded == expectedRows else {
                    throw DecodeFailure(.corrupted(.png, detail: "libspng gave \(rowsDecoded) of \(expectedRows) scanlines"))
                }
                initialized = width * height * 3
            }
            // Everything after the image data, through IEND; libspng stops at IEND's type without reading
            // its CRC, so the complete 12-byte IEND chunk (its CRC is always AE 42 60 82) is looked for too.
            try check(spng_decode_chunks(ctx), "reading the chunks after the image data")
            guard hasCompleteIEND(bytes) else {
                throw DecodeFailure(.truncated(.png, detail: "the file ends inside the final IEND chunk"))
            }
            let kinds = [0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"]
            var source = "\(depth)-bit \(kinds[colourType]!)"
            if interlaced { source += ", interlaced" }
            return (RGBImage(width: width, height: height, pixels: pixels), source)
        } }
    }

    /// Pixels in each row of Adam7 pass `pass` (0...6) of an image `width` wide; pass 6 is every column.
    static func passWidth(_ width: Int, _ pass: Int) -> Int {
        (width - adam7XStart[pass] + adam7XDelta[pass] - 1) / adam7XDelta[pass]
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
    static func check(_ code: Int32, _ step: String, _ bytes: [UInt8]) throws(DecodeFailure) {
        guard code != 0 else { return }
        let text = String(cString: spng_strerror(code))
        if code == Int32(SPNG_IO_EOF.rawValue) || code == Int32(SPNG_EOF.rawValue) {
            throw DecodeFailure(.truncated(.png, detail: "the file ends while \(step); libspng: \(text)"))
        }
        if code == Int32(SPNG_ECHUNK_LIMITS.rawValue) { throw chunkLimitFailure(bytes) }
        throw DecodeFailure(.corrupted(.png, detail: "\(step): libspng: \(text)"))
    }

    /// Which of ``PNGLimits`` libspng's one "chunk/cache limits" code stands for, found by walking the chunks
    /// in file order the way libspng keeps them: the first text or sPLT chunk past the count, the first kept
    /// chunk over the size limit, or the kept chunks' declared sizes adding up past the cache limit; failing
    /// all three, compressed chunks (zTXt, iTXt, iCCP) inflated past the cache limit.
    static func chunkLimitFailure(_ bytes: [UInt8]) -> DecodeFailure {
        let kept: Set<String> = ["tEXt", "zTXt", "iTXt", "sPLT", "iCCP", "eXIf"]
        let counted: Set<String> = ["tEXt", "zTXt", "iTXt", "sPLT"]
        var count = 0, total = 0
        var p = 8
        while p + 8 <= bytes.count {
            let length = readBE32(bytes, p)
            let type = String(decoding: bytes[p + 4..<p + 8], as: UTF8.self)
            if type == "IEND" { break }
            if kept.contains(type) {
                if counted.contains(type) {
                    count += 1
                    if count > PNGLimits.chunkCount {
                        return DecodeFailure(.limitExceeded(.png, limit: .pngChunkCount(PNGLimits.chunkCount),
                            detail: "the \(type) chunk at byte \(p) is text or sPLT chunk number \(count)"))
                    }
                }
                if length > PNGLimits.chunkBytes {
                    return DecodeFailure(.limitExceeded(.png, limit: .pngChunkBytes(PNGLimits.chunkBytes),
                        detail: "the \(type) chunk at byte \(p) holds \(length) bytes"))
                }
                total += length
                if total > PNGLimits.chunkCacheBytes {
                    return DecodeFailure(.limitExceeded(.png, limit: .pngChunkCacheBytes(PNGLimits.chunkCacheBytes),
                        detail: "the ancillary chunks through the \(type) at byte \(p) hold \(total) bytes"))
                }
            }
            p += 12 + length
        }
        return DecodeFailure(.limitExceeded(.png, limit: .pngChunkCacheBytes(PNGLimits.chunkCacheBytes),
            detail: "the compressed text or ICC profile chunks (zTXt, iTXt, iCCP) inflate past it"))
    }
}
