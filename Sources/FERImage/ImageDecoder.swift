#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings for ``ImageDecoder``.
public struct ImageDecodingOptions: Sendable, Equatable {
    /// What to do when a file's extension names another image format than its content.
    public enum ExtensionPolicy: Sendable, Equatable {
        /// Decode by content and add an ``ImageNote`` (the default; PIL also goes by content).
        case note
        /// Refuse with ``ImageError/Kind/wrongExtension(fileExtension:actual:)``.
        case error
        /// Decode by content and say nothing.
        case ignore
    }

    /// PIL's default `Image.MAX_IMAGE_PIXELS`: 1024 * 1024 * 1024 / 4 / 3 = 89,478,485.
    public static let pilMaxImagePixels = 89_478_485

    /// Largest `width * height` accepted, checked from the header before anything is decoded; `nil` for
    /// no limit. The default is PIL's `MAX_IMAGE_PIXELS`. (PIL only warns between 1x and 2x that and raises
    /// `DecompressionBombError` above 2x; this decoder refuses above 1x.)
    public var maxPixels: Int?
    /// Largest file read, in bytes (default 1 GiB).
    public var maxFileBytes: Int
    /// Handling of an extension that contradicts the content.
    public var extensionMismatch: ExtensionPolicy
    /// Most scans (SOS markers) a JPEG may have, counted from the markers before decoding starts; `nil` for
    /// no limit. Each progressive scan costs a pass over the whole image: a 231 KB file with 499 scans took
    /// 18 s to decode. Encoders write about 10 (libjpeg's default progressive script: 10 for colour, 6 for
    /// grey). PIL has no such limit.
    public var maxJPEGScans: Int?

    /// The default ``maxJPEGScans``: 100.
    public static let defaultMaxJPEGScans = 100
    /// Largest whole-image coefficient buffer a progressive or multi-scan JPEG may make libjpeg allocate,
    /// in bytes, computed from the header before decoding starts; `nil` for no limit. That buffer holds
    /// 2 bytes per sample of every component before upsampling (6 bytes a pixel at 4:4:4, 3 at 4:2:0),
    /// on top of the 3-byte RGB result, so without a budget a 540 KB progressive 4:4:4 file of 9450x9450
    /// (within PIL's pixel limit, which is all PIL checks) costs 835 MB.
    public var maxJPEGCoefficientBytes: Int?

    /// The default ``maxJPEGCoefficientBytes``: 256 MiB, which every 4:2:0 image within PIL's pixel limit
    /// fits (89,478,485 pixels x 3 bytes), and a 4:4:4 one up to 44.7 million pixels (6688 x 6688).
    public static let defaultMaxJPEGCoefficientBytes = 1 << 28

    /// Which library's reading of the samples the result reproduces.
    public var reading: PixelReading

    /// Options with PIL's pixel limit, a 1 GiB file limit, extension mismatches as notes, at most 100
    /// scans and a 256 MiB coefficient buffer per JPEG, and PIL's reading of the samples.
    public init(maxPixels: Int? = ImageDecodingOptions.pilMaxImagePixels, maxFileBytes: Int = 1 << 30,
                extensionMismatch: ExtensionPolicy = .note,
                maxJPEGScans: Int? = ImageDecodingOptions.defaultMaxJPEGScans,
                maxJPEGCoefficientBytes: Int? = ImageDecodingOptions.defaultMaxJPEGCoefficientBytes,
                reading: PixelReading = .pil) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
        self.extensionMismatch = extensionMismatch
        self.maxJPEGScans = maxJPEGScans
        self.maxJPEGCoefficientBytes = maxJPEGCoefficientBytes
        self.reading = reading
    }

    /// These options with ``reading`` set to ``PixelReading/opencv``: how photos are read for detection.
    public var forPhotos: ImageDecodingOptions {
        var options = self
        options.reading = .opencv
        return options
    }

    /// The defaults.
    public static let `default` = ImageDecodingOptions()
}

/// Whose reading of an image file's samples the 8-bit RGB result reproduces. The two differ only where
/// PIL and OpenCV do: 16-bit grey PNG.
public enum PixelReading: Sendable, Equatable {
    /// PIL's `Image.open(f).convert('RGB')`, the LFNSB authors' evaluation transform: what aligned crops
    /// are read with. 16-bit grey is clipped, `min(v, 255)` (PIL's mode `I;16` to RGB), which turns most
    /// of a 16-bit photo white.
    case pil
    /// OpenCV's `cv2.imread(f, cv2.IMREAD_COLOR)` (its BGR turned to RGB), with which the authors ran the
    /// detector: what photos are read with. 16-bit grey keeps each sample's high byte, as OpenCV's
    /// `png_set_strip_16` does (checked against opencv-python-headless 5.0.0.93).
    case opencv
}

/// A decoded image with what is known about its source.
public struct DecodedImage: Sendable, Equatable {
    /// The file, as the caller named it.
    public var path: String
    /// 8-bit RGB pixels, as PIL's `Image.open(path).convert('RGB')`.
    public var image: RGBImage
    /// The container format, from the magic bytes.
    public var format: ImageFormat
    /// The source's pixel format in words, for example `"16-bit grey"`, `"8-bit palette, interlaced"`,
    /// `"progressive, 4:2:0 YCbCr"`, `"CMYK"`.
    public var sourceDescription: String
    /// Things to tell the user (extension mismatch, size differing from 112x112).
    public var notes: [ImageNote]

    /// True when the image is not 112x112 and preprocessing resizes it.
    public var needsResize: Bool { image.needsResize }

    /// True when the other ``PixelReading`` gives other pixels for this file (a 16-bit grey PNG), so that
    /// a caller who decoded it for one use and needs the other decodes it again.
    public var readingMatters: Bool {
        format == .png && ["16-bit grey", "16-bit grey, interlaced"].contains(sourceDescription)
    }

    /// Makes a decoded image record.
    public init(path: String, image: RGBImage, format: ImageFormat, sourceDescription: String, notes: [ImageNote]) {
        self.path = path
        self.image = image
        self.format = format
        self.sourceDescription = sourceDescription
        self.notes = notes
    }
}

/// Reads PNG and JPEG files into 8-bit RGB exactly as PIL's `Image.open(f).convert('RGB')` does.
///
/// The format comes from the magic bytes, never the extension. PNG goes through libspng, JPEG through
/// libjpeg-turbo's libjpeg API (behind a C shim that turns libjpeg's error exits into return codes); every
/// code is checked. Nothing partial is ever returned: a truncated or damaged file is an ``ImageError``,
/// libjpeg warnings included. Width and height are read from the header and checked against
/// ``ImageDecodingOptions/maxPixels`` before any pixel memory is allocated, the JPEG scan count against
/// ``ImageDecodingOptions/maxJPEGScans`` before any decoding.
///
/// Memory: both formats are decoded a few rows at a time into the RGB result, so an accepted image costs
/// its 8-bit RGB size (3 bytes a pixel) plus a few rows: for PNG at most two rows as stored (up to 8 bytes
/// a pixel of one row, libspng's current and previous scanline), for JPEG libjpeg's MCU rows, plus, for
/// progressive JPEG only, libjpeg's whole-image coefficient buffer (see `JPEGDecoding`). The pages of the
/// result are only touched as rows arrive, so a file that ends early costs only what was decoded.
///
/// Conversions (each verified against Pillow 13.0.0, see Tests/Fixtures/images/README.md):
/// - grey 1/2/4-bit: scaled to 0...255 (v * 255 / (2^bits - 1)); grey 8-bit copied to R, G and B;
/// - grey 16-bit (PIL mode `I;16`): clipped, `min(v, 255)`, not scaled; with ``PixelReading/opencv``
///   (photos), the high byte, as OpenCV's `imread`;
/// - grey+alpha, RGB, RGBA at 16 bits: the high byte of each sample; alpha is dropped, never composited;
/// - palette: the PLTE colour, indices past the end of PLTE are black; tRNS is ignored (as for grey and RGB);
/// - JPEG grey: replicated; CMYK: inverted (Adobe convention, PIL's `CMYK;I`) and converted with PIL's
///   `R = (255 - K) - round(C (255 - K) / 255)` in PIL's integer form; YCbCr: libjpeg's accurate integer
///   IDCT with fancy upsampling, as PIL's defaults.
/// Neither gamma, ICC profiles nor EXIF orientation is applied (PIL's `open` + `convert` applies none).
public enum ImageDecoder {
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Extensions (lower case) of the files ``imageFiles(inDirectory:)`` lists.
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "jpe", "jfif"]

    /// Reads and decodes the image file at `path`.
    public static func decode(path: String, options: ImageDecodingOptions = .default) throws(ImageError) -> DecodedImage {
        try decode(pathBytes: Array(path.utf8), options: options)
    }

    /// Reads and decodes the file whose name is `pathBytes` (any bytes but NUL, as Linux allows);
    /// messages show it with ``FileNames/display(_:)``.
    public static func decode(pathBytes: [UInt8], options: ImageDecodingOptions = .default) throws(ImageError) -> DecodedImage {
        let path = FileNames.display(pathBytes)
        let bytes = try readFile(pathBytes: pathBytes, maxBytes: options.maxFileBytes)
        return try decode(bytes: bytes, path: path, fileExtension: fileExtension(of: path), options: options)
    }

    /// Decodes an image held in memory. `path` labels errors and notes; `fileExtension` (without the dot),
    /// when given, is compared with the content.
    public static func decode(bytes: [UInt8], path: String = "<memory>", fileExtension: String? = nil,
                              options: ImageDecodingOptions = .default) throws(ImageError) -> DecodedImage {
        guard !bytes.isEmpty else { throw ImageError(path: path, kind: .emptyFile) }
        let ext = fileExtension?.lowercased()
        // A file cut inside the signature itself.
        if bytes.count < 8 && bytes.count >= 2 && bytes.elementsEqual(pngSignature.prefix(bytes.count)) {
            let detail = "the file ends at byte \(bytes.count), inside the signature"
            throw ImageError(path: path, kind: .truncated(.png, detail: detail))
        }
        if bytes.count == 2 && bytes == [0xFF, 0xD8] {
            throw ImageError(path: path, kind: .truncated(.jpeg, detail: "the file ends after the start-of-image marker"))
        }
        guard let format = detectFormat(bytes) else {
            // Only a .png / .jpg-like extension is "wrong" here: it promised a format this decoder reads.
            let claimed = ext.flatMap { ["PNG", "JPEG"].contains(extensionFormatName($0)) ? $0 : nil }
            throw ImageError(path: path, kind: .notAnImage(looksLike: describeUnknown(bytes), fileExtension: claimed))
        }
        var notes: [ImageNote] = []
        if let ext, let claimed = extensionFormatName(ext), claimed != format.rawValue {
            switch options.extensionMismatch {
            case .note: notes.append(ImageNote(path: path, kind: .extensionMismatch(fileExtension: ext, actual: format)))
            case .error: throw ImageError(path: path, kind: .wrongExtension(fileExtension: ext, actual: format))
            case .ignore: break
            }
        }
        let image: RGBImage
        let source: String
        do {
            switch format {
            case .png: (image, source) = try PNGDecoding.decode(bytes, maxPixels: options.maxPixels, reading: options.reading)
            case .jpeg:
                (image, source) = try JPEGDecoding.decode(bytes, maxPixels: options.maxPixels, maxScans: options.maxJPEGScans,
                                                          maxCoefficientBytes: options.maxJPEGCoefficientBytes)
            }
        } catch {
            throw ImageError(path: path, kind: error.kind)
        }
        if image.needsResize {
            notes.append(ImageNote(path: path, kind: .resizedToModelInput(width: image.width, height: image.height)))
        }
        return DecodedImage(path: path, image: image, format: format, sourceDescription: source, notes: notes)
    }

    /// The format the magic bytes announce, or nil when neither PNG nor JPEG.
    public static func detectFormat(_ bytes: [UInt8]) -> ImageFormat? {
        if bytes.count >= 8 && bytes[0..<8].elementsEqual(pngSignature) { return .png }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
        return nil
    }

    /// The image files in `directory` (not recursive): regular files with an extension in
    /// ``imageExtensions`` (any case), not hidden, sorted by name, as `directory/name` paths.
    /// Throws ``ImageError/Kind/noImagesInDirectory`` when there is none.
    public static func imageFiles(inDirectory directory: String) throws(ImageError) -> [String] {
        try imageFiles(inDirectory: Array(directory.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// ``imageFiles(inDirectory:)`` with names as bytes: a name that is not UTF-8 is listed like any
    /// other, sorted by its bytes.
    public static func imageFiles(inDirectory directory: [UInt8]) throws(ImageError) -> [[UInt8]] {
        let shown = FileNames.display(directory)
        guard let dir = FileNames.withCString(directory, { opendir($0) }) else { throw ImageError(path: shown, kind: errnoKind(errno)) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            guard name.first != UInt8(ascii: "."), let ext = fileExtension(of: FileNames.display(name)),
                  imageExtensions.contains(ext.lowercased()) else {
                continue
            }
            let full = directory.last == UInt8(ascii: "/") ? directory + name : directory + [UInt8(ascii: "/")] + name
            var info = stat()
            if FileNames.withCString(full, { stat($0, &info) }) == 0 && (info.st_mode & S_IFMT) == S_IFREG { names.append(full) }
        }
        guard !names.isEmpty else { throw ImageError(path: shown, kind: .noImagesInDirectory) }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// True when `path` names a directory (following symbolic links).
    public static func isDirectory(_ path: String) -> Bool { isDirectory(Array(path.utf8)) }

    /// ``isDirectory(_:)`` for a name given as bytes.
    public static func isDirectory(_ path: [UInt8]) -> Bool {
        var info = stat()
        return FileNames.withCString(path, { stat($0, &info) }) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    // MARK: - Files

    /// The whole file, refusing directories, special files, empty and over-large files.
    static func readFile(path: String, maxBytes: Int) throws(ImageError) -> [UInt8] {
        try readFile(pathBytes: Array(path.utf8), maxBytes: maxBytes)
    }

    /// The whole file named by `pathBytes`, refusing directories, special files, empty and over-large
    /// files (errors show the name with ``FileNames/display(_:)``).
    public static func readFile(pathBytes: [UInt8], maxBytes: Int) throws(ImageError) -> [UInt8] {
        let path = FileNames.display(pathBytes)
        // The system would read the name only up to a NUL: another file than the one named.
        guard !pathBytes.contains(0) else { throw ImageError(path: path, kind: .unreadable(reason: "the name holds a NUL byte")) }
        let fd = FileNames.withCString(pathBytes) { open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        guard fd >= 0 else { throw ImageError(path: path, kind: errnoKind(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ImageError(path: path, kind: errnoKind(errno)) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw ImageError(path: path, kind: .isDirectory)
        default: throw ImageError(path: path, kind: .notARegularFile)
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw ImageError(path: path, kind: .emptyFile) }
        guard size <= maxBytes else { throw ImageError(path: path, kind: .fileTooLarge(bytes: size, limit: maxBytes)) }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        var failure: Int32 = 0
        bytes.withUnsafeMutableBytes { raw in
            while filled < size {
                let n = read(fd, raw.baseAddress! + filled, size - filled)
                if n > 0 { filled += n } else if n == 0 { break } else if errno != EINTR { failure = errno; break }
            }
        }
        if failure != 0 { throw ImageError(path: path, kind: errnoKind(failure)) }
        // The file shrank while being read: what was read is all there is (a truncation, if it matters).
        if filled < size { bytes.removeSubrange(filled...) }
        guard !bytes.isEmpty else { throw ImageError(path: path, kind: .emptyFile) }
        return bytes
    }

    static func errnoKind(_ code: Int32) -> ImageError.Kind {
        switch code {
        case ENOENT, ENOTDIR: return .fileNotFound
        case EACCES, EPERM: return .permissionDenied
        case EISDIR: return .isDirectory
        default: return .unreadable(reason: String(cString: strerror(code)))
        }
    }

    static func fileExtension(of path: String) -> String? {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        let ext = name[name.index(after: dot)...]
        return ext.isEmpty ? nil : String(ext)
    }

    /// The image format an extension claims, or nil for extensions that claim none.
    static func extensionFormatName(_ ext: String) -> String? {
        switch ext.lowercased() {
        case "png": return "PNG"
        case "jpg", "jpeg", "jpe", "jfif": return "JPEG"
        case "gif": return "GIF"
        case "bmp": return "BMP"
        case "webp": return "WebP"
        case "tif", "tiff": return "TIFF"
        case "heic", "heif", "avif": return "HEIF/AVIF"
        default: return nil
        }
    }

    /// What bytes that are neither PNG nor JPEG seem to be, for the error message.
    static func describeUnknown(_ bytes: [UInt8]) -> String? {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + prefix.count && Array(bytes[offset..<offset + prefix.count]) == prefix
        }
        if starts(Array("GIF8".utf8)) { return "a GIF image, which is not supported" }
        if starts(Array("BM".utf8)) && bytes.count >= 14 { return "a BMP image, which is not supported" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "a WebP image, which is not supported" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) {
            return "a TIFF image, which is not supported"
        }
        if starts(Array("ftyp".utf8), at: 4) { return "an ISO media file (HEIF/AVIF/MP4), which is not supported" }
        if starts(Array("%PDF".utf8)) { return "a PDF document" }
        if starts(Array("PNG".utf8), at: 1) {
            return "a PNG file with a damaged signature, as after a text-mode transfer"
        }
        if starts([0xFF, 0xD8]) { return "a JPEG file with a damaged start marker" }
        let head = bytes.prefix(512)
        let texty = head.allSatisfy { $0 == 9 || $0 == 10 || $0 == 13 || ($0 >= 32 && $0 != 127) }
        if texty, String(validating: head, as: UTF8.self) != nil { return "text" }
        let hex = bytes.prefix(4).map { String($0, radix: 16, uppercase: true) }.map { $0.count == 1 ? "0" + $0 : $0 }
        return "unknown data starting with bytes \(hex.joined(separator: " "))"
    }
}
