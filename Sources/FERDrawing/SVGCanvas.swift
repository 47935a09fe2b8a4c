import CCairo

/// A vector canvas that writes an SVG file: what is drawn is kept as shapes and text outlines,
/// sharp at any zoom. The file is complete once ``finish()`` returns.
///
/// ```swift
/// let canvas = try SVGCanvas(path: "confusion.svg", width: 640, height: 560)
/// canvas.fillRectangle(x: 0, y: 0, width: 640, height: 560, color: .white)
/// canvas.drawText("91.1%", x: 320, y: 270, size: 12, color: .black, alignment: .center)
/// try canvas.finish()
/// ```
public final class SVGCanvas: Canvas {
    /// The file written.
    public let path: String
    private let sink: FileSink
    private var isFinished = false

    /// Creates (or truncates) the SVG file at `path` for a picture of `width` x `height` points.
    /// Throws ``DrawingError/cannotWrite(path:reason:)`` when the file cannot be created, and
    /// ``DrawingError/invalidSize(width:height:)`` unless both sides are positive and finite.
    public init(path: String, width: Double, height: Double) throws(DrawingError) {
        guard width.isFinite, height.isFinite, width > 0, height > 0 else {
            throw .invalidSize(width: width, height: height)
        }
        let sink = try FileSink(path: path)
        self.path = path
        self.sink = sink
        let surface = cairo_svg_surface_create_for_stream(FileSink.writeFunction, sink.closure, width, height)!
        do {
            try super.init(surface: surface, width: width, height: height, path: path)
        } catch {
            sink.discard()
            throw error
        }
    }

    deinit {
        // An unfinished canvas still ends its file (errors cannot be reported from here).
        if !isFinished {
            cairo_surface_finish(surface)
            try? sink.close()
        }
    }

    /// Completes the SVG file and closes it. Throws when an earlier drawing call failed or the
    /// file could not be written (the partial file is then removed), and
    /// ``DrawingError/finished(path:)`` when called twice.
    public func finish() throws(DrawingError) {
        guard !isFinished else { throw .finished(path: path) }
        isFinished = true
        do {
            try checkStatus(operation: "drawing", path: path)
        } catch {
            cairo_surface_finish(surface)
            sink.discard()
            throw error
        }
        cairo_surface_finish(surface)
        let status = cairo_surface_status(surface)
        guard status == CAIRO_STATUS_SUCCESS else {
            let reason = sink.writeFailure
            sink.discard()
            if let reason { throw .cannotWrite(path: path, reason: reason) }
            throw .cairo(operation: "writing SVG", path: path, status: Canvas.string(status))
        }
        do { try sink.close() } catch {
            sink.discard()
            throw error
        }
    }
}
