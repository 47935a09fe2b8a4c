import FERDrawing
import FEREvaluation
import Foundation

/// The row-normalised confusion matrix as a figure, like the ones facial-expression papers print:
/// a grid of cells shaded from white (0%) to dark blue (100%) with the percentage in each, true
/// classes down the left, predicted classes along the bottom, a colour bar on the right and the
/// accuracy in the title. PNG or SVG, by the file's extension.
///
/// Geometry (pixels or points), fixed so that pictures of the same class count line up: the grid
/// starts at (``left``, ``top``), each cell ``cell`` square; the whole picture is
/// `left + n * cell + right` by `top + n * cell + bottom`.
enum ConfusionPlot {
    static let cell = 72.0
    static let left = 136.0
    static let top = 56.0
    static let bottom = 64.0
    static let right = 96.0

    /// The picture's size for `classes` classes.
    static func size(classes: Int) -> (width: Int, height: Int) {
        (Int(left + Double(classes) * cell + right), Int(top + Double(classes) * cell + bottom))
    }

    /// Writes the figure to `path` (`.png` or `.svg`).
    static func write(to path: String, metrics: ClassificationMetrics, classNames: [String], title: String) throws {
        let (width, height) = size(classes: classNames.count)
        if path.lowercased().hasSuffix(".svg") {
            let canvas = try SVGCanvas(path: path, width: Double(width), height: Double(height))
            draw(on: canvas, metrics: metrics, classNames: classNames, title: title)
            try canvas.finish()
        } else {
            let canvas = try RasterCanvas(width: width, height: height, background: .white)
            draw(on: canvas, metrics: metrics, classNames: classNames, title: title)
            try canvas.writePNG(to: path)
        }
    }

    /// ColorBrewer's 9-class "Blues", light to dark (matplotlib's `Blues` colour map).
    static let blues: [UInt32] = [0xF7FBFF, 0xDEEBF7, 0xC6DBEF, 0x9ECAE1, 0x6BAED6, 0x4292C6, 0x2171B5, 0x08519C, 0x08306B]

    /// The colour of `value` in 0...1, interpolated linearly between the ``blues`` steps.
    static func shade(_ value: Double) -> DrawingColor {
        let v = min(max(value.isFinite ? value : 0, 0), 1) * Double(blues.count - 1)
        let i = min(Int(v), blues.count - 2)
        let t = v - Double(i)
        let a = DrawingColor(hex: blues[i]), b = DrawingColor(hex: blues[i + 1])
        return DrawingColor(red: a.red + (b.red - a.red) * t, green: a.green + (b.green - a.green) * t,
                            blue: a.blue + (b.blue - a.blue) * t)
    }

    /// The largest font size up to `size` at which `text` is at most `width` wide.
    private static func fitting(_ text: String, width: Double, size: Double, on canvas: Canvas, bold: Bool = false) -> Double {
        var s = size
        while s > 7 && canvas.measureText(text, size: s, bold: bold).width > width { s -= 0.5 }
        return s
    }

    static func draw(on canvas: Canvas, metrics: ClassificationMetrics, classNames: [String], title: String) {
        let n = classNames.count
        let normalized = metrics.normalizedConfusion
        let gridSide = Double(n) * cell
        let text = DrawingColor(gray: 0.1)
        canvas.fillRectangle(x: 0, y: 0, width: canvas.width, height: canvas.height, color: .white)

        // Title, centred over the grid.
        let titleSize = fitting(title, width: left + gridSide + right - 16, size: 16, on: canvas, bold: true)
        let titleHeight = canvas.measureText(title, size: titleSize, bold: true).height
        canvas.drawText(title, x: min(left + gridSide / 2, canvas.width / 2), y: (top - titleHeight) / 2, size: titleSize,
                        color: text, bold: true, alignment: .center)

        // Cells: shade and percentage (white on dark cells).
        for (t, row) in normalized.enumerated() {
            for (p, value) in row.enumerated() {
                let x = left + Double(p) * cell, y = top + Double(t) * cell
                canvas.fillRectangle(x: x, y: y, width: cell, height: cell, color: shade(value))
                let label = String(format: "%.1f%%", value * 100)
                let size = canvas.measureText(label, size: 14)
                canvas.drawText(label, x: x + cell / 2, y: y + (cell - size.height) / 2, size: 14,
                                color: value > 0.5 ? .white : text, alignment: .center)
            }
        }
        canvas.strokeRectangle(x: left, y: top, width: gridSide, height: gridSide, color: DrawingColor(gray: 0.3))

        // Class names: true classes right-aligned left of the rows, predicted ones under the columns.
        for (i, name) in classNames.enumerated() {
            let rowSize = fitting(name, width: left - 40, size: 13, on: canvas)
            let h = canvas.measureText(name, size: rowSize).height
            canvas.drawText(name, x: left - 8, y: top + Double(i) * cell + (cell - h) / 2, size: rowSize, color: text,
                            alignment: .right)
            let columnSize = fitting(name, width: cell - 4, size: 13, on: canvas)
            canvas.drawText(name, x: left + Double(i) * cell + cell / 2, y: top + gridSide + 6, size: columnSize,
                            color: text, alignment: .center)
        }
        canvas.drawText("Predicted label", x: left + gridSide / 2, y: top + gridSide + 34, size: 14, color: text,
                        bold: true, alignment: .center)
        let axis = canvas.measureText("True label", size: 14, bold: true)
        canvas.drawText("True label", x: 8, y: top + gridSide / 2 + axis.width / 2, size: 14, color: text, bold: true,
                        rotation: -Double.pi / 2)

        // Colour bar: 0% at the bottom, 100% at the top, ticks every 20%.
        let barX = left + gridSide + 24, barWidth = 18.0
        let rows = Int(gridSide)
        canvas.antialias = false
        for r in 0..<rows {
            canvas.fillRectangle(x: barX, y: top + Double(r), width: barWidth, height: 1,
                                 color: shade(1 - (Double(r) + 0.5) / Double(rows)))
        }
        canvas.antialias = true
        canvas.strokeRectangle(x: barX, y: top, width: barWidth, height: gridSide, color: DrawingColor(gray: 0.3))
        for tick in stride(from: 0, through: 100, by: 20) {
            let y = top + gridSide * (1 - Double(tick) / 100)
            canvas.drawLine(x0: barX + barWidth, y0: y, x1: barX + barWidth + 4, y1: y, color: text)
            let size = canvas.measureText("\(tick)%", size: 11)
            canvas.drawText("\(tick)%", x: barX + barWidth + 7, y: y - size.height / 2, size: 11, color: text)
        }
    }
}
