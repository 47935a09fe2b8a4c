import FERDrawing
import FERImage
import FERRuntime

/// `--annotate`: a photo with every face's box, landmarks and label drawn on it, legible at a glance.
enum Annotation {
    /// Box colours, one per class index (cycled); embedders use the first.
    static let palette: [DrawingColor] = [0xE6194B, 0x3CB44B, 0x4363D8, 0xF58231, 0x911EB4, 0x42D4F4, 0xF032E6, 0xBFEF45]
        .map { DrawingColor(hex: $0) }
    /// Landmark colours: eyes, nose, mouth corners.
    static let landmarkColors: [DrawingColor] = [0x00FFFF, 0x00FFFF, 0xFFFF00, 0xFF00FF, 0xFF00FF].map { DrawingColor(hex: $0) }

    /// `image` with the faces of `analysis` drawn: per face a box in its class's colour, the five
    /// landmarks, and `k label probability` (or `k score` for embedders) on a filled tag above the box
    /// (inside it at the top edge). Line widths and text scale with the photo.
    static func draw(_ analysis: PhotoAnalysis, on image: RGBImage) throws -> RGBImage {
        let canvas = try RasterCanvas(image: image)
        let side = Double(max(image.width, image.height))
        let line = max(2, (side / 400).rounded())
        let font = max(12, (side / 55).rounded())
        let dot = max(2, line * 1.2)
        // Worst faces first, so the best face's tag is drawn last, on top.
        for (k, analyzed) in analysis.faces.enumerated().reversed() {
            let face = analyzed.face
            let color = palette[(analyzed.classification.index ?? 0) % palette.count]
            let (x1, y1, x2, y2) = (face.box[0], face.box[1], face.box[2], face.box[3])
            canvas.strokeRectangle(x: x1, y: y1, width: x2 - x1, height: y2 - y1, color: color, lineWidth: line)
            for (point, pointColor) in zip(face.landmarks, landmarkColors) {
                canvas.fillCircle(centerX: point.x, centerY: point.y, radius: dot, color: pointColor)
            }
            let c = analyzed.classification
            let text: String
            if let label = c.label, let p = c.probability {
                text = "\(k + 1) \(label) \(String(format: "%.2f", p))"
            } else {
                text = "\(k + 1) face \(String(format: "%.2f", face.score))"
            }
            let size = canvas.measureText(text, size: font, bold: true)
            let tagHeight = size.height + 4
            let top = y1 - line / 2 - tagHeight >= 0 ? y1 - line / 2 - tagHeight : y1 + line / 2
            let left = min(max(0, x1 - line / 2), max(0, Double(image.width) - size.width - 4))
            canvas.drawLabel(text, x: left, y: top, size: font, textColor: .white, background: color, padding: 2, bold: true)
        }
        return try canvas.image()
    }
}
