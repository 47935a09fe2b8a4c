import CCairo

/// Horizontal placement of text relative to the x coordinate it is drawn at.
public enum TextAlignment: Sendable {
    /// The text starts at x.
    case left
    /// The text is centred on x.
    case center
    /// The text ends at x.
    case right
}

/// The size of a piece of text in one font size, as ``Canvas/measureText(_:size:bold:)`` gives it.
///
/// `width` is the advance of the whole string; `height` is the font's ascent plus descent (the same
/// for every string at one size, so labels of different text line up). Text drawn at (x, y) with
/// `.left` alignment stays inside the box (x, y, width, height), its baseline at y + ascent.
public struct TextSize: Equatable, Sendable {
    /// Advance width of the string.
    public var width: Double
    /// Ascent plus descent of the font at this size.
    public var height: Double
    /// Distance from the top of the box to the baseline.
    public var ascent: Double
    /// Distance from the baseline to the bottom of the box.
    public var descent: Double
}

/// A rectangle in canvas coordinates (origin top left, y down).
public struct DrawingRect: Equatable, Sendable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
}

/// What raster and SVG canvases share: drawing rectangles, lines, filled circles and text.
///
/// Coordinates are in pixels (raster) or points (SVG), origin at the top left, y down. A shape is
/// drawn over what is there with its colour's alpha. Drawing calls do not throw: a failure (a NaN
/// coordinate, say) puts Cairo's context in an error state, which the call that produces output
/// (``RasterCanvas/writePNG(to:)``, ``RasterCanvas/image()``, ``SVGCanvas/finish()``) reports as a
/// ``DrawingError``. Text uses Cairo's built-in ("toy") text API with the ``fontFamily`` face.
///
/// A canvas is not thread-safe: draw on each from one thread at a time.
public class Canvas {
    /// The font face text is drawn in (fontconfig picks the nearest installed face when it is
    /// missing; `tools/setup` installs it as `fonts-dejavu-core`).
    public static let fontFamily = "DejaVu Sans"

    /// Width in pixels (raster) or points (SVG).
    public let width: Double
    /// Height in pixels (raster) or points (SVG).
    public let height: Double

    /// Smooth edges (Cairo's default) or hard ones; hard edges keep rectangles on whole-pixel
    /// coordinates exact. Text is always smoothed.
    public var antialias: Bool = true {
        didSet { cairo_set_antialias(context, antialias ? CAIRO_ANTIALIAS_DEFAULT : CAIRO_ANTIALIAS_NONE) }
    }

    let surface: OpaquePointer
    let context: OpaquePointer

    /// Takes ownership of `surface` (destroyed on failure too) and makes a context on it.
    init(surface: OpaquePointer, width: Double, height: Double, path: String?) throws(DrawingError) {
        let status = cairo_surface_status(surface)
        guard status == CAIRO_STATUS_SUCCESS else {
            cairo_surface_destroy(surface)
            throw .cairo(operation: "creating the canvas", path: path, status: Self.string(status))
        }
        let context = cairo_create(surface)!
        let contextStatus = cairo_status(context)
        guard contextStatus == CAIRO_STATUS_SUCCESS else {
            cairo_destroy(context)
            cairo_surface_destroy(surface)
            throw .cairo(operation: "creating the drawing context", path: path, status: Self.string(contextStatus))
        }
        self.surface = surface
        self.context = context
        self.width = width
        self.height = height
    }

    deinit {
        cairo_destroy(context)
        cairo_surface_destroy(surface)
    }

    // MARK: Shapes

    /// Fills the rectangle with its top-left corner at (x, y).
    public func fillRectangle(x: Double, y: Double, width: Double, height: Double, color: DrawingColor) {
        cairo_rectangle(context, x, y, width, height)
        setColor(color)
        cairo_fill(context)
    }

    /// Fills `rect`.
    public func fillRectangle(_ rect: DrawingRect, color: DrawingColor) {
        fillRectangle(x: rect.x, y: rect.y, width: rect.width, height: rect.height, color: color)
    }

    /// Strokes the outline of the rectangle with its top-left corner at (x, y), the line centred on
    /// the rectangle's edges (half of `lineWidth` falls outside it).
    public func strokeRectangle(x: Double, y: Double, width: Double, height: Double, color: DrawingColor,
                                lineWidth: Double = 1) {
        cairo_rectangle(context, x, y, width, height)
        stroke(color: color, lineWidth: lineWidth)
    }

    /// Strokes the outline of `rect` (see ``strokeRectangle(x:y:width:height:color:lineWidth:)``).
    public func strokeRectangle(_ rect: DrawingRect, color: DrawingColor, lineWidth: Double = 1) {
        strokeRectangle(x: rect.x, y: rect.y, width: rect.width, height: rect.height, color: color,
                        lineWidth: lineWidth)
    }

    /// Draws a straight line from (x0, y0) to (x1, y1) with butt ends.
    public func drawLine(x0: Double, y0: Double, x1: Double, y1: Double, color: DrawingColor,
                         lineWidth: Double = 1) {
        cairo_move_to(context, x0, y0)
        cairo_line_to(context, x1, y1)
        stroke(color: color, lineWidth: lineWidth)
    }

    /// Fills the circle of `radius` around (centerX, centerY).
    public func fillCircle(centerX: Double, centerY: Double, radius: Double, color: DrawingColor) {
        cairo_new_sub_path(context)
        cairo_arc(context, centerX, centerY, radius, 0, 2 * Double.pi)
        setColor(color)
        cairo_fill(context)
    }

    // MARK: Text

    /// The box `text` takes at font size `size` (in pixels or points), in the regular or bold face.
    public func measureText(_ text: String, size: Double, bold: Bool = false) -> TextSize {
        selectFont(size: size, bold: bold)
        var fontExtents = cairo_font_extents_t()
        cairo_font_extents(context, &fontExtents)
        var textExtents = cairo_text_extents_t()
        cairo_text_extents(context, text, &textExtents)
        return TextSize(width: textExtents.x_advance, height: fontExtents.ascent + fontExtents.descent,
                        ascent: fontExtents.ascent, descent: fontExtents.descent)
    }

    /// Draws `text` at font size `size` with the top of its box (see ``TextSize``) at `y` and its
    /// left edge, centre or right edge at `x` as `alignment` says. `rotation` (radians, clockwise
    /// on screen) turns the text around (x, y); -pi/2 reads bottom to top. Returns the box before
    /// rotation.
    @discardableResult
    public func drawText(_ text: String, x: Double, y: Double, size: Double, color: DrawingColor,
                         bold: Bool = false, alignment: TextAlignment = .left, rotation: Double = 0) -> DrawingRect {
        let measured = measureText(text, size: size, bold: bold)
        let left: Double
        switch alignment {
        case .left: left = 0
        case .center: left = -measured.width / 2
        case .right: left = -measured.width
        }
        cairo_save(context)
        cairo_translate(context, x, y)
        if rotation != 0 { cairo_rotate(context, rotation) }
        cairo_move_to(context, left, measured.ascent)
        setColor(color)
        cairo_show_text(context, text)
        cairo_new_path(context)
        cairo_restore(context)
        return DrawingRect(x: x + left, y: y, width: measured.width, height: measured.height)
    }

    /// Draws `text` on a filled box `padding` wider on every side, the box's top-left corner at
    /// (x, y): a label that stays readable on any picture. Returns the box.
    @discardableResult
    public func drawLabel(_ text: String, x: Double, y: Double, size: Double, textColor: DrawingColor,
                          background: DrawingColor, padding: Double = 2, bold: Bool = false) -> DrawingRect {
        let measured = measureText(text, size: size, bold: bold)
        let box = DrawingRect(x: x, y: y, width: measured.width + 2 * padding, height: measured.height + 2 * padding)
        fillRectangle(box, color: background)
        drawText(text, x: x + padding, y: y + padding, size: size, color: textColor, bold: bold)
        return box
    }

    // MARK: Helpers

    func setColor(_ color: DrawingColor) {
        cairo_set_source_rgba(context, color.red, color.green, color.blue, color.alpha)
    }

    private func stroke(color: DrawingColor, lineWidth: Double) {
        setColor(color)
        cairo_set_line_width(context, lineWidth)
        cairo_stroke(context)
    }

    private func selectFont(size: Double, bold: Bool) {
        cairo_select_font_face(context, Canvas.fontFamily, CAIRO_FONT_SLANT_NORMAL,
                               bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(context, size)
    }

    /// Throws when the context or the surface is in an error state.
    func checkStatus(operation: String, path: String?) throws(DrawingError) {
        let contextStatus = cairo_status(context)
        guard contextStatus == CAIRO_STATUS_SUCCESS else {
            throw .cairo(operation: operation, path: path, status: Self.string(contextStatus))
        }
        let surfaceStatus = cairo_surface_status(surface)
        guard surfaceStatus == CAIRO_STATUS_SUCCESS else {
            throw .cairo(operation: operation, path: path, status: Self.string(surfaceStatus))
        }
    }

    static func string(_ status: cairo_status_t) -> String {
        String(cString: cairo_status_to_string(status))
    }
}
