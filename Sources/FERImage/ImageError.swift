/// The image file formats the decoder reads, recognised by their magic bytes.
public enum ImageFormat: String, Sendable, Equatable, CaseIterable {
    /// PNG, signature `89 50 4E 47 0D 0A 1A 0A`, decoded by libspng.
    case png = "PNG"
    /// JPEG (JFIF / Exif / Adobe), SOI marker `FF D8 FF`, decoded by libjpeg-turbo's libjpeg API.
    case jpeg = "JPEG"
}

/// Why an image file was refused. One per problem, each with a one-line message that names the file.
///
/// `description` is the line a command-line tool prints: `"<path>: <message>"`, for example
/// `photo.jpg: truncated JPEG file (libjpeg-turbo: Premature end of JPEG file)`.
public struct ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Equatable, Sendable {
        /// No file or directory at the path.
        case fileNotFound
        /// The path names a directory where a file was expected.
        case isDirectory
        /// The file exists but this process may not read it (EACCES / EPERM).
        case permissionDenied
        /// The path is not a regular file (a FIFO, a device, a socket), which is not read, so nothing can block.
        case notARegularFile
        /// Reading failed for another reason (the C library's text).
        case unreadable(reason: String)
        /// The file is larger than ``ImageDecodingOptions/maxFileBytes``.
        case fileTooLarge(bytes: Int, limit: Int)
        /// The file has no bytes.
        case emptyFile
        /// The bytes are neither PNG nor JPEG. `looksLike` says what they seem to be ("text", "a GIF image",
        /// ...) when recognisable; `fileExtension` is the file's extension when it claims an image format.
        case notAnImage(looksLike: String?, fileExtension: String?)
        /// The content is PNG or JPEG but the extension names another image format, and
        /// ``ImageDecodingOptions/extensionMismatch`` is ``ImageDecodingOptions/ExtensionPolicy/error``.
        case wrongExtension(fileExtension: String, actual: ImageFormat)
        /// The file ends before the image does.
        case truncated(ImageFormat, detail: String)
        /// The data is damaged (a CRC or checksum mismatch, an invalid code or header value).
        case corrupted(ImageFormat, detail: String)
        /// A valid format feature this decoder does not handle (for example 12-bit JPEG).
        case unsupported(ImageFormat, detail: String)
        /// The header declares a width or height of zero.
        case zeroSize(ImageFormat, width: Int, height: Int)
        /// The header declares more pixels than the limit (a decompression bomb); checked before decoding.
        case tooManyPixels(ImageFormat, width: Int, height: Int, limit: Int)
        /// The file needs more of some resource than one of the decoder's documented limits allows (see
        /// ``ImageLimit``); `detail` says what the file asks for and where.
        case limitExceeded(ImageFormat, limit: ImageLimit, detail: String)
        /// Decoding needs more memory than this process can still allocate (``MemoryHeadroom``): `needed`
        /// bytes of buffers (`what`) against `available`; checked before the buffers are made.
        case notEnoughMemory(ImageFormat, needed: Int, available: Int, what: String)
        /// A directory holds no file with an image extension.
        case noImagesInDirectory
    }

    /// The file the error is about, as the caller named it (or a label such as `<memory>`).
    public var path: String
    /// The problem.
    public var kind: Kind

    /// Makes an error about `path`.
    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    /// The problem in words, without the path: one line.
    public var message: String {
        switch kind {
        case .fileNotFound: return "no such file or directory"
        case .isDirectory: return "is a directory, not an image file"
        case .permissionDenied: return "permission denied (the file cannot be read)"
        case .notARegularFile: return "not a regular file"
        case .unreadable(let reason): return "cannot be read: \(reason)"
        case .fileTooLarge(let bytes, let limit): return "file is \(bytes) bytes, over the \(limit)-byte limit"
        case .emptyFile: return "empty file (0 bytes)"
        case .notAnImage(let looksLike, let ext):
            var text = "not a PNG or JPEG image"
            if let looksLike { text += " (it looks like \(looksLike))" }
            if let ext { text += "; its .\(ext) extension is wrong" }
            return text
        case .wrongExtension(let ext, let actual):
            return "wrong extension: .\(ext) but the content is \(actual.rawValue)"
        case .truncated(let format, let detail): return "truncated \(format.rawValue) file (\(detail))"
        case .corrupted(let format, let detail): return "corrupted \(format.rawValue) data (\(detail))"
        case .unsupported(let format, let detail): return "unsupported \(format.rawValue) (\(detail))"
        case .zeroSize(let format, let width, let height):
            return "zero-sized image: the \(format.rawValue) header declares \(width)x\(height) pixels"
        case .tooManyPixels(let format, let width, let height, let limit):
            let (count, overflow) = width.multipliedReportingOverflow(by: height)
            return "image too large: the \(format.rawValue) header declares \(width)x\(height)"
                + (overflow ? "" : " = \(count)") + " pixels, over the limit of \(limit) "
                + "(a possible decompression bomb; raise the pixel limit, --max-pixels, to allow it)"
        case .limitExceeded(let format, let limit, let detail):
            return "\(format.rawValue) over the decoder's limit of \(limit) (\(detail))"
        case .notEnoughMemory(let format, let needed, let available, let what):
            return "not enough memory to decode this \(format.rawValue): \(what) need \(needed) bytes, but the process "
                + "may allocate only \(available) more (its address-space, data or cgroup limit, or RAM plus swap)"
        case .noImagesInDirectory: return "directory holds no .png or .jpg/.jpeg images"
        }
    }

    /// `"<path>: <message>"`, one line.
    public var description: String { "\(path): \(message)" }
}

/// A resource limit of the decoder that a file went past, with its value. Each is checked before the
/// work it bounds is done where the file allows (the JPEG scan count, PNG chunk sizes as declared),
/// otherwise as soon as libspng notices (PNG chunk data after decompression).
public enum ImageLimit: Equatable, Sendable, CustomStringConvertible {
    /// Scans (SOS markers) in one JPEG: ``ImageDecodingOptions/maxJPEGScans``, 100 by default. Each
    /// progressive scan costs a pass over the whole image, and normal encoders write about 10.
    case jpegScans(Int)
    /// Bytes in one ancillary PNG chunk that libspng keeps (text, ICC profile, EXIF, sPLT):
    /// ``PNGLimits/chunkBytes``.
    case pngChunkBytes(Int)
    /// Bytes of ancillary PNG chunk data kept in all, counted after decompression (zTXt, iTXt, iCCP):
    /// ``PNGLimits/chunkCacheBytes``.
    case pngChunkCacheBytes(Int)
    /// Text and sPLT chunks in one PNG: ``PNGLimits/chunkCount``.
    case pngChunkCount(Int)
    /// Bytes of one PNG row as stored: ``PNGLimits/rowBytes``.
    case pngRowBytes(Int)
    /// Bytes of libjpeg's whole-image coefficient buffer, which a progressive (or multi-scan) JPEG needs
    /// besides its pixels: ``ImageDecodingOptions/maxJPEGCoefficientBytes``, 256 MiB by default.
    case jpegCoefficientBytes(Int)

    /// The limit in words, for example `"100 scans"`.
    public var description: String {
        switch self {
        case .jpegScans(let n): return "\(n) scans"
        case .pngChunkBytes(let n): return "\(n) bytes per ancillary chunk"
        case .pngChunkCacheBytes(let n): return "\(n) bytes of ancillary chunk data in all"
        case .pngChunkCount(let n): return "\(n) text and sPLT chunks"
        case .pngRowBytes(let n): return "\(n) bytes per row"
        case .jpegCoefficientBytes(let n): return "\(n) bytes of coefficient buffer"
        }
    }
}

/// Something worth telling the user about an image that was decoded anyway. One line each.
public struct ImageNote: Equatable, Sendable, CustomStringConvertible {
    /// What the note is about.
    public enum Kind: Equatable, Sendable {
        /// The extension names another image format than the content (`photo.jpg` holding a PNG). The file
        /// was decoded by its content, as PIL does.
        case extensionMismatch(fileExtension: String, actual: ImageFormat)
        /// The image is not 112x112 and is resized; the model expects aligned 112x112 face crops.
        case resizedToModelInput(width: Int, height: Int)
    }

    /// The file the note is about.
    public var path: String
    /// The note.
    public var kind: Kind

    /// Makes a note about `path`.
    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    /// The note in words, without the path: one line.
    public var message: String {
        switch kind {
        case .extensionMismatch(let ext, let actual):
            return "extension .\(ext) does not match the content (\(actual.rawValue)); decoded as \(actual.rawValue)"
        case .resizedToModelInput(let width, let height):
            let side = RGBImage.modelInputSize
            return "image is \(width)x\(height), resized to \(side)x\(side); "
                + "the model expects aligned \(side)x\(side) face crops"
        }
    }

    /// `"<path>: note: <message>"`, one line.
    public var description: String { "\(path): note: \(message)" }
}
