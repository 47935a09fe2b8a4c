/// The two directional poolings of coordinate attention and the gating that uses their result.
///
/// Input and output are NHWC `(batch, height, width, channels)`.
public enum CoordinatePooling {
    /// `pooled[n, y, c] = mean over x of input[n, y, x, c]` for y < height, then
    /// `pooled[n, height + x, c] = mean over y of input[n, y, x, c]`: `(batch, height + width, channels)`.
    public static func pool(
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        pooled: UnsafeMutablePointer<Float>
    ) {
        let positions = height + width
        pooled.update(repeating: 0, count: batch * positions * channels)
        let vectorEnd = channels & ~7
        for n in 0..<batch {
            let image = input + n * height * width * channels
            let rows = pooled + n * positions * channels
            let cols = rows + height * channels
            for y in 0..<height {
                for x in 0..<width {
                    let px = image + (y * width + x) * channels
                    let r = rows + y * channels, k = cols + x * channels
                    var c = 0
                    while c < vectorEnd {
                        let v = loadVector(px + c)
                        storeVector(loadVector(r + c) + v, r + c)
                        storeVector(loadVector(k + c) + v, k + c)
                        c += 8
                    }
                    while c < channels { r[c] += px[c]; k[c] += px[c]; c += 1 }
                }
            }
            let inverseWidth = 1 / Float(width), inverseHeight = 1 / Float(height)
            for i in 0..<height * channels { rows[i] *= inverseWidth }
            for i in 0..<width * channels { cols[i] *= inverseHeight }
        }
    }

    /// `x[n, y, x', c] *= rowGate[n, y, c] * columnGate[n, x', c]`, where the gates are the
    /// `(batch, height + width, channels)` layout of ``pool(input:batch:height:width:channels:pooled:)``
    /// (rows first, then columns), in place.
    public static func gate(
        _ x: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        gates: UnsafePointer<Float>
    ) {
        let positions = height + width
        let vectorEnd = channels & ~7
        for n in 0..<batch {
            let image = x + n * height * width * channels
            let rowGates = gates + n * positions * channels
            let colGates = rowGates + height * channels
            for y in 0..<height {
                for xx in 0..<width {
                    let px = image + (y * width + xx) * channels
                    let r = rowGates + y * channels, k = colGates + xx * channels
                    var c = 0
                    while c < vectorEnd {
                        storeVector(loadVector(px + c) * (loadVector(r + c) * loadVector(k + c)), px + c)
                        c += 8
                    }
                    while c < channels { px[c] *= r[c] * k[c]; c += 1 }
                }
            }
        }
    }
}
