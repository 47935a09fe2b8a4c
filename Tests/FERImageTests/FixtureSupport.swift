import FERImage
import FERTensor
import XCTest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the image fixtures are, and how to read them (see Tests/Fixtures/images/README.md).
enum Fixtures {
    /// The repository root, found from this file with symbolic links resolved (the tests may be built
    /// through a package whose test folder is a link to this one).
    static let repoRoot: String = {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        guard let resolved = realpath(here, nil) else { return here + "/../.." }
        defer { free(resolved) }
        return URL(fileURLWithPath: String(cString: resolved)).deletingLastPathComponent()
            .deletingLastPathComponent().path
    }()

    static let root = repoRoot + "/Tests/Fixtures/images"

    /// One row of manifest.tsv.
    struct Case {
        var name: String
        var input: String  // "inputs/x.png", "shared:data/images/x.png" or "downloads:samples/x.png"
        var pilMode: String
        var width: Int
        var height: Int
        var decodedHash: String
        var resizedHash: String
        var tensorHash: String

        /// True for inputs read from outside the fixtures (../shared, .downloads).
        var isExternal: Bool { input.contains(":") }

        /// The input's path on this machine.
        var path: String {
            if input.hasPrefix("shared:") { return repoRoot + "/../shared/" + input.dropFirst("shared:".count) }
            if input.hasPrefix("downloads:") { return repoRoot + "/.downloads/" + input.dropFirst("downloads:".count) }
            return root + "/" + input
        }
    }

    static let cases: [Case] = {
        guard let text = try? String(contentsOfFile: root + "/manifest.tsv", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return Case(name: f[0], input: f[1], pilMode: f[2], width: Int(f[3])!, height: Int(f[4])!,
                        decodedHash: f[5], resizedHash: f[6], tensorHash: f[7])
        }
    }()

    static func `case`(_ name: String) throws -> Case {
        guard let c = cases.first(where: { $0.name == name }) else {
            throw XCTSkip("\(name) is not in Tests/Fixtures/images/manifest.tsv (run tools/reference/make_image_fixtures.py)")
        }
        return c
    }

    /// The case's input path, or a skip when it lives outside the repository and is absent.
    static func inputPath(_ c: Case) throws -> String {
        if FileManager.default.fileExists(atPath: c.path) { return c.path }
        if c.input.hasPrefix("shared:") {
            throw XCTSkip("\(c.path) is absent: the shared data folder ../shared is not next to the repository")
        }
        if c.input.hasPrefix("downloads:") {
            throw XCTSkip("\(c.path) is absent: run tools/setup to fetch the sample images")
        }
        XCTFail("fixture input \(c.path) is missing")
        throw XCTSkip("missing fixture")
    }

    /// An expected image stored as 8-bit RGB PNG (written by PIL), or nil when not stored.
    static func expectedPNG(_ relative: String) throws -> RGBImage? {
        let path = root + "/expected/" + relative
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try ImageDecoder.decode(path: path, options: .init(extensionMismatch: .ignore)).image
    }

    /// A uint8 `.npy` array (NumPy format 1.0, descr '|u1', C order): (shape, bytes). FERTensor's NPY reads
    /// floats only, so this is the tiny reader the 8-bit fixtures need.
    static func readUInt8NPY(_ path: String) throws -> (shape: [Int], values: [UInt8]) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count > 10, bytes[0] == 0x93, bytes[1...5].elementsEqual("NUMPY".utf8), bytes[6] == 1 else {
            throw NSError(domain: "npy", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): not a version 1 .npy"])
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let header = String(decoding: bytes[10..<10 + headerLength], as: UTF8.self)
        guard header.contains("'|u1'"), header.contains("'fortran_order': False"),
              let open = header.firstIndex(of: "("), let close = header.firstIndex(of: ")") else {
            throw NSError(domain: "npy", code: 2, userInfo: [NSLocalizedDescriptionKey: "\(path): not a C-order uint8 array: \(header)"])
        }
        let shape = header[header.index(after: open)..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let values = Array(bytes[(10 + headerLength)...])
        guard values.count == shape.reduce(1, *) else {
            throw NSError(domain: "npy", code: 3, userInfo: [NSLocalizedDescriptionKey: "\(path): \(values.count) values for \(shape)"])
        }
        return (shape, values)
    }

    /// FNV-1a, 64 bits, as the generator writes it (16 lower-case hex digits).
    static func fnv1a64<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The hash of a float tensor's little-endian float32 bytes.
    static func fnv1a64(_ tensor: Tensor) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tensor.count * 4)
        for v in tensor.data {
            let b = v.bitPattern.littleEndian
            bytes += [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]
        }
        return fnv1a64(bytes)
    }

    /// How two 8-bit images differ: values off by one, values off by more, and the first difference.
    struct PixelDiff: CustomStringConvertible {
        var total = 0, offByOne = 0, offByMore = 0
        var first: String?
        var exact: Bool { offByOne == 0 && offByMore == 0 }
        var description: String {
            "\(offByOne) of \(total) values off by one, \(offByMore) off by more" + (first.map { "; first: \($0)" } ?? "")
        }
    }

    static func diff(_ a: RGBImage, _ b: RGBImage) -> PixelDiff {
        var d = PixelDiff()
        guard a.width == b.width, a.height == b.height else {
            d.offByMore = 1
            d.first = "sizes \(a.width)x\(a.height) and \(b.width)x\(b.height)"
            return d
        }
        d.total = a.pixels.count
        for i in 0..<a.pixels.count where a.pixels[i] != b.pixels[i] {
            let delta = abs(Int(a.pixels[i]) - Int(b.pixels[i]))
            if delta == 1 { d.offByOne += 1 } else { d.offByMore += 1 }
            if d.first == nil {
                let p = i / 3
                d.first = "pixel (\(p % a.width), \(p / a.width)) channel \(i % 3): \(a.pixels[i]) vs \(b.pixels[i])"
            }
        }
        return d
    }

    /// A fresh scratch directory for files the tests make.
    static func scratchDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "ferimage-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
