/// A colour as red, green, blue and alpha, each from 0 to 1 (values outside are clamped by Cairo).
public struct DrawingColor: Equatable, Sendable {
    /// Red, 0...1.
    public var red: Double
    /// Green, 0...1.
    public var green: Double
    /// Blue, 0...1.
    public var blue: Double
    /// Opacity, 0 (transparent) ... 1 (opaque).
    public var alpha: Double

    /// A colour from its components, each 0...1.
    public init(red: Double, green: Double, blue: Double, alpha: Double = 1) {
        self.red = red
        self.green = green
        self.blue = blue
        self.alpha = alpha
    }

    /// A grey: `level` 0 is black, 1 white.
    public init(gray level: Double, alpha: Double = 1) {
        self.init(red: level, green: level, blue: level, alpha: alpha)
    }

    /// A colour from a 24-bit `0xRRGGBB` value, as CSS and most palettes write it.
    public init(hex: UInt32, alpha: Double = 1) {
        self.init(red: Double((hex >> 16) & 0xFF) / 255, green: Double((hex >> 8) & 0xFF) / 255,
                  blue: Double(hex & 0xFF) / 255, alpha: alpha)
    }

    /// The same colour with another opacity.
    public func withAlpha(_ alpha: Double) -> DrawingColor {
        DrawingColor(red: red, green: green, blue: blue, alpha: alpha)
    }

    /// Opaque black.
    public static let black = DrawingColor(gray: 0)
    /// Opaque white.
    public static let white = DrawingColor(gray: 1)
}
