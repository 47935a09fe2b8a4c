import FERKernelsAVX512

/// The two directional poolings of coordinate attention and the gating that uses their result.
///
/// Input and output are NHWC `(batch, height, width, channels)`.
public enum CoordinatePooling {
    /// `pooled[n, y, c] = mean over x of input[n, y, x, c]` for y < height, then
    /// `pooled[n, height + x, c] = mean over y of input[n, y, x, c]`: `(batch, height + width, channels)`.
    ///
    /// - Parameter lanes: the channels to pool (all when nil): threads sharing one pooling each
    ///   take a range.
    public static func pool(
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        pooled: UnsafeMutablePointer<Float>, lanes: Range<Int>? = nil
    ) {
        for n in 0..<batch {
            accumulate(image: input + n * height * width * channels, height: height, width: width, channels: channels,
                       pooled: pooled + n * (height + width) * channels, lines: 0..<height, lanes: lanes)
        }
    }

    /// ``pool(input:batch:height:width:channels:pooled:lanes:)`` of one image fed a few rows at a
    /// time, in order, while they are still in cache (a depthwise convolution pools its output
    /// as it writes it): the row means of `lines`; the column sums, which `lines` starting at row
    /// 0 clears and `lines` ending at `height` turns into means. Any split of the rows gives the
    /// same floats as one call.
    public static func accumulate(
        image: UnsafePointer<Float>, height: Int, width: Int, channels: Int, pooled: UnsafeMutablePointer<Float>,
        lines: Range<Int>, lanes: Range<Int>? = nil
    ) {
        let lanes = lanes ?? 0..<channels
        precondition(lanes.lowerBound >= 0 && lanes.upperBound <= channels, "channels \(lanes) of \(channels)")
        precondition(lines.lowerBound >= 0 && lines.upperBound <= height, "rows \(lines) of \(height)")
        let vectorEnd = lanes.lowerBound + (lanes.count & ~7)
        let inverseWidth = 1 / Float(width), inverseHeight = 1 / Float(height)
        let rows = pooled, cols = pooled + height * channels
        if lines.lowerBound == 0 {
            for x in 0..<width { (cols + x * channels + lanes.lowerBound).update(repeating: 0, count: lanes.count) }
        }
        // Each row's sums stay in a register across the row; the column sums (one row of
        // width x channels, in L1) are updated in place.
        for y in lines {
            let line = image + y * width * channels
            var c = lanes.lowerBound
            while c < vectorEnd {
                var sum = SIMD8<Float>(repeating: 0)
                for x in 0..<width {
                    let v = loadVector(line + x * channels + c)
                    sum += v
                    let k = cols + x * channels + c
                    storeVector(loadVector(k) + v, k)
                }
                storeVector(sum * inverseWidth, rows + y * channels + c)
                c += 8
            }
            while c < lanes.upperBound {
                var sum: Float = 0
                for x in 0..<width {
                    let v = line[x * channels + c]
                    sum += v
                    cols[x * channels + c] += v
                }
                rows[y * channels + c] = sum * inverseWidth
                c += 1
            }
        }
        if lines.upperBound == height && !lines.isEmpty {
            for x in 0..<width {
                for c in lanes { cols[x * channels + c] *= inverseHeight }
            }
        }
    }

    /// The plain loop ``pool(input:batch:height:width:channels:pooled:lanes:)`` must agree with, in Double.
    public static func poolReference(
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        pooled: UnsafeMutablePointer<Float>
    ) {
        for n in 0..<batch {
            for c in 0..<channels {
                for y in 0..<height {
                    var sum = 0.0
                    for x in 0..<width { sum += Double(input[((n * height + y) * width + x) * channels + c]) }
                    pooled[(n * (height + width) + y) * channels + c] = Float(sum / Double(width))
                }
                for x in 0..<width {
                    var sum = 0.0
                    for y in 0..<height { sum += Double(input[((n * height + y) * width + x) * channels + c]) }
                    pooled[(n * (height + width) + height + x) * channels + c] = Float(sum / Double(height))
                }
            }
        }
    }

    /// `x[n, y, x', c] *= rowGate[n, y, c] * columnGate[n, x', c]`, where the gates are the
    /// `(batch, height + width, channels)` layout of ``pool(input:batch:height:width:channels:pooled:lanes:)``
    /// (rows first, then columns), in place.
    ///
    /// - Parameter rows: the rows to gate, numbered `n * height + y` over the batch (all when nil):
    ///   threads sharing one gating each take a range.
    public static func gate(
        _ x: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        gates: UnsafePointer<Float>, rows: Range<Int>? = nil
    ) {
        let rows = rows ?? 0..<batch * height
        precondition(rows.lowerBound >= 0 && rows.upperBound <= batch * height, "rows \(rows) of \(batch * height)")
        let positions = height + width
        let vectorEnd = channels & ~7
        // Channels the AVX-512 loop gates, 16 at a time (the same floats); the 8-float one the rest.
        let wide = MicroKernel.preferred == .avx512 ? channels & ~15 : 0
        for row in rows {
            let (n, y) = row.quotientAndRemainder(dividingBy: height)
            let image = x + n * height * width * channels
            let rowGates = gates + n * positions * channels
            let colGates = rowGates + height * channels
            if wide > 0 {
                AVX512Elementwise.gateRow(image + y * width * channels, width: width, channels: channels, vectorChannels: wide,
                                          rowGate: rowGates + y * channels, columnGates: colGates)
                if wide == channels { continue }
            }
            for xx in 0..<width {
                let px = image + (y * width + xx) * channels
                let r = rowGates + y * channels, k = colGates + xx * channels
                var c = wide
                while c < vectorEnd {
                    storeVector(loadVector(px + c) * (loadVector(r + c) * loadVector(k + c)), px + c)
                    c += 8
                }
                while c < channels { px[c] *= r[c] * k[c]; c += 1 }
            }
        }
    }
}
