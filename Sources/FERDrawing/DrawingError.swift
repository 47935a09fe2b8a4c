/// Why a canvas could not be made, drawn on, read back or written.
///
/// Every case that involves a file names it; Cairo's own failures carry Cairo's status string
/// (`cairo_status_to_string`), for example "invalid matrix (not invertible)".
public enum DrawingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A canvas size Cairo cannot hold: raster sides must be whole pixels in 1...32767, SVG sides
    /// positive and finite (points).
    case invalidSize(width: Double, height: Double)
    /// `path` could not be opened, written or closed; `reason` is the system's message (errno) or
    /// Cairo's status string.
    case cannotWrite(path: String, reason: String)
    /// Cairo failed during `operation` with `status` (its status string); `path` names the file the
    /// canvas writes to, when there is one.
    case cairo(operation: String, path: String?, status: String)
    /// The SVG canvas writing `path` was already finished: it takes no more drawing and cannot be
    /// finished twice.
    case finished(path: String)

    public var description: String {
        switch self {
        case .invalidSize(let width, let height):
            return "canvas size \(width)x\(height) is not drawable: sides must be positive, finite and at most \(RasterCanvas.maxSide) pixels"
        case .cannotWrite(let path, let reason):
            return "\(path): cannot write: \(reason)"
        case .cairo(let operation, let path, let status):
            return (path.map { "\($0): " } ?? "") + "\(operation) failed in Cairo: \(status)"
        case .finished(let path):
            return "\(path): the SVG canvas is already finished"
        }
    }
}
