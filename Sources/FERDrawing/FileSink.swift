import CCairo

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file Cairo writes through its stream API, so that a failure is reported with the system's
/// reason (errno) rather than Cairo's generic "error while writing to output stream".
final class FileSink {
    let path: String
    private var file: UnsafeMutablePointer<FILE>?
    /// The system's message for the first failed write, if any.
    private(set) var writeFailure: String?

    /// Opens (creates or truncates) `path` for writing.
    init(path: String) throws(DrawingError) {
        self.path = path
        guard let file = fopen(path, "wb") else {
            throw .cannotWrite(path: path, reason: String(cString: strerror(errno)))
        }
        self.file = file
    }

    deinit { if let file { fclose(file) } }

    /// The pointer Cairo passes back to ``writeFunction``.
    var closure: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Cairo's write callback: `closure` is a ``FileSink``.
    static let writeFunction: cairo_write_func_t = { closure, data, length in
        let sink = Unmanaged<FileSink>.fromOpaque(closure!).takeUnretainedValue()
        return sink.write(data, count: Int(length)) ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR
    }

    private func write(_ data: UnsafePointer<UInt8>?, count: Int) -> Bool {
        guard writeFailure == nil, let file else { return false }
        guard count > 0, let data else { return true }
        if fwrite(data, 1, count, file) != count {
            writeFailure = String(cString: strerror(errno))
            return false
        }
        return true
    }

    /// Closes the file; throws when a write or the close failed.
    func close() throws(DrawingError) {
        guard let file else { return }
        self.file = nil
        let closed = fclose(file) == 0
        let closeReason = closed ? nil : String(cString: strerror(errno))
        if let writeFailure { throw .cannotWrite(path: path, reason: writeFailure) }
        if let closeReason { throw .cannotWrite(path: path, reason: closeReason) }
    }

    /// Closes the file and deletes it when it is a regular file (after a failed write: no partial
    /// file is left behind; a device such as /dev/full is left alone).
    func discard() {
        if let file { fclose(file) }
        file = nil
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { unlink(path) }
    }
}
