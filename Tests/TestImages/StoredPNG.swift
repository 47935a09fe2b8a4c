/// Minimal PNG files for tests: grey, 8 or 16 bits, zlib with stored (uncompressed) blocks.
public enum StoredPNG {
    /// A grey PNG, `width` x `height` `samples`, 8-bit, or 16-bit with each sample repeated in both bytes
    /// (`v * 257`).
    public static func grey(width: Int, height: Int, samples: [UInt8], sixteenBit: Bool) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (1 + width * 2))
        for y in 0..<height {
            raw.append(0)  // filter None
            for v in samples[y * width..<(y + 1) * width] { raw += sixteenBit ? [v, v] : [v] }  // v * 257 when 16-bit
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            zlib.append(offset + n == raw.count ? 1 : 0)
            zlib += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            zlib += raw[offset..<offset + n]
            offset += n
        } while offset < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        zlib += be32(b << 16 | a)
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [sixteenBit ? 16 : 8, 0, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return png
    }

    /// The grey of interleaved RGB pixels, ITU-R 601 weights rounded (as PIL's `convert('L')`).
    public static func luma(rgb pixels: [UInt8]) -> [UInt8] {
        (0..<pixels.count / 3).map { i in
            let r = Int(pixels[3 * i]), g = Int(pixels[3 * i + 1]), b = Int(pixels[3 * i + 2])
            return UInt8((r * 299 + g * 587 + b * 114 + 500) / 1000)
        }
    }

    private static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        }
        return be32(UInt32(data.count)) + body + be32(~crc)
    }
}
