/// The input the classifiers take, written down once for every module: aligned face crops of
/// `size` x `size` pixels, three channels (RGB), normalised with the ImageNet mean and std.
public enum ModelInput {
    /// Height and width of the aligned face crops the authors' networks take.
    public static let size = 112
    /// Channels of one input image.
    public static let channels = 3
    /// `[3, 112, 112]`, PyTorch's per-image layout.
    public static let shape = [channels, size, size]
    /// `[112, 112, 3]`, the layout images are decoded in and the engine runs on.
    public static let channelsLastShape = [size, size, channels]

    /// The batch size of an input `[N, 3, 112, 112]` or `[3, 112, 112]` (channel-first), or
    /// `[N, 112, 112, 3]` or `[112, 112, 3]` (`channelsLast`); nil for any other shape.
    public static func batchCount(of shape: [Int], channelsLast: Bool = false) -> Int? {
        let image = channelsLast ? channelsLastShape : self.shape
        if shape == image { return 1 }
        guard shape.count == 4, Array(shape.dropFirst()) == image, shape[0] >= 1 else { return nil }
        return shape[0]
    }

    /// `"[N, 3, 112, 112] or [3, 112, 112]"`, for messages.
    public static func describe(channelsLast: Bool = false) -> String {
        let image = (channelsLast ? channelsLastShape : shape).map(String.init).joined(separator: ", ")
        return "[N, \(image)] or [\(image)]"
    }
}

/// Moving the channel axis between PyTorch's layout (NCHW, channel-first) and the engine's (NHWC,
/// channel-last), for `batch` images of `positions` (height x width) pixels each.
public enum ChannelOrder {
    /// `dst[(b * positions + p) * channels + c] = src[(b * channels + c) * positions + p]`.
    public static func toChannelsLast(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, channels: Int, positions: Int
    ) {
        for b in 0..<batch {
            let image = src + b * channels * positions, out = dst + b * channels * positions
            if channels == 3 {
                // Every model input: three planes, read in order (the general loop below took 1% of a pass).
                let (red, green, blue) = (image, image + positions, image + 2 * positions)
                for p in 0..<positions {
                    out[3 * p] = red[p]
                    out[3 * p + 1] = green[p]
                    out[3 * p + 2] = blue[p]
                }
                continue
            }
            for p in 0..<positions {
                for c in 0..<channels { out[p * channels + c] = image[c * positions + p] }
            }
        }
    }

    /// `dst[(b * channels + c) * positions + p] = src[(b * positions + p) * channels + c]`.
    public static func toChannelsFirst(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, channels: Int, positions: Int
    ) {
        for b in 0..<batch {
            let image = src + b * channels * positions, out = dst + b * channels * positions
            for p in 0..<positions {
                for c in 0..<channels { out[c * positions + p] = image[p * channels + c] }
            }
        }
    }
}

extension Tensor {
    /// A `[N, C, H, W]` tensor as `[N, H, W, C]` (or `[C, H, W]` as `[H, W, C]`).
    public func channelsLast() -> Tensor {
        precondition(shape.count == 3 || shape.count == 4, "channelsLast of a \(shape) tensor")
        let s = shape.count == 3 ? [1] + shape : shape
        let (n, c, h, w) = (s[0], s[1], s[2], s[3])
        let out = [Float](unsafeUninitializedCapacity: data.count) { buffer, initialized in
            data.withUnsafeBufferPointer {
                ChannelOrder.toChannelsLast($0.baseAddress!, buffer.baseAddress!, batch: n, channels: c, positions: h * w)
            }
            initialized = data.count
        }
        return Tensor(shape: shape.count == 3 ? [h, w, c] : [n, h, w, c], data: out)
    }
}
