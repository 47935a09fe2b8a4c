import FERTensor

/// The authors' evaluation transform on a PIL image, in the same float32 arithmetic:
/// `Resize((112, 112))` (PIL bilinear, see ``Resize``), `ToTensor()` (HWC uint8 -> CHW float32,
/// x = float32(p) / 255) and `Normalize(mean, std)` (x = (x - mean[c]) / std[c], float32, with mean and std
/// rounded to float32 first, as `torch.as_tensor` does). Matches torchvision 0.28 bit for bit.
public enum Preprocessing {
    /// The model input side, 112.
    public static let inputSize = ModelInput.size
    /// ImageNet channel means (R, G, B) as float32.
    public static let mean: [Float] = [0.485, 0.456, 0.406]
    /// ImageNet channel standard deviations (R, G, B) as float32.
    public static let std: [Float] = [0.229, 0.224, 0.225]

    /// `lookup[c * 256 + p]` = ((Float(p) / 255) - mean[c]) / std[c], each step a float32 operation:
    /// the whole of ToTensor + Normalize for one 8-bit value.
    static let lookup: [Float] = {
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for p in 0..<256 { table[c * 256 + p] = (Float(p) / 255 - mean[c]) / std[c] }
        }
        return table
    }()

    /// ToTensor + Normalize of `image` without resizing: a [3, height, width] tensor.
    public static func normalize(_ image: RGBImage) -> Tensor {
        var data = [Float](repeating: 0, count: 3 * image.width * image.height)
        data.withUnsafeMutableBufferPointer { normalize(image, into: $0) }
        return Tensor(shape: [3, image.height, image.width], data: data)
    }

    /// ToTensor + Normalize of `image` into `output`, which holds (3, height, width) floats (CHW); for
    /// buffers planned up front, such as one sample of a batch.
    public static func normalize(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) {
        let plane = image.width * image.height
        precondition(output.count >= 3 * plane, "output holds \(output.count) floats, needs \(3 * plane)")
        image.pixels.withUnsafeBufferPointer { px in
            lookup.withUnsafeBufferPointer { table in
                let src = px.baseAddress!  // (H, W, 3)
                let dst = output.baseAddress!  // (3, H, W)
                for c in 0..<3 {
                    let t = table.baseAddress! + c * 256
                    let out = dst + c * plane
                    for i in 0..<plane { out[i] = t[Int(src[3 * i + c])] }
                }
            }
        }
    }

    /// ToTensor + Normalize of `image` into `output` in the image's own channel-last layout
    /// (height, width, 3): the layout the engine runs on, so no transposition happens in between.
    public static func normalize(_ image: RGBImage, channelsLastInto output: UnsafeMutableBufferPointer<Float>) {
        let count = 3 * image.width * image.height
        precondition(output.count >= count, "output holds \(output.count) floats, needs \(count)")
        image.pixels.withUnsafeBufferPointer { px in
            lookup.withUnsafeBufferPointer { table in
                let (src, dst, t) = (px.baseAddress!, output.baseAddress!, table.baseAddress!)
                var i = 0
                while i < count {
                    dst[i] = t[Int(src[i])]
                    dst[i + 1] = t[256 + Int(src[i + 1])]
                    dst[i + 2] = t[512 + Int(src[i + 2])]
                    i += 3
                }
            }
        }
    }

    /// `image` resized to 112x112 when it is not already, then normalised, channel-last: [112, 112, 3].
    public static func modelInputChannelsLast(_ image: RGBImage) -> Tensor {
        let resized = resizedForModel(image)
        var data = [Float](repeating: 0, count: 3 * inputSize * inputSize)
        data.withUnsafeMutableBufferPointer { normalize(resized, channelsLastInto: $0) }
        return Tensor(shape: ModelInput.channelsLastShape, data: data)
    }

    /// A channel-last batch of model inputs: [N, 112, 112, 3].
    public static func batchChannelsLast(_ images: [RGBImage]) -> Tensor {
        let sample = 3 * inputSize * inputSize
        var data = [Float](repeating: 0, count: images.count * sample)
        data.withUnsafeMutableBufferPointer { buffer in
            for (n, image) in images.enumerated() {
                normalize(resizedForModel(image), channelsLastInto: UnsafeMutableBufferPointer(rebasing: buffer[n * sample ..< (n + 1) * sample]))
            }
        }
        return Tensor(shape: [images.count] + ModelInput.channelsLastShape, data: data)
    }

    /// `image` resized to 112x112 when it is not already (PIL bilinear), then normalised: [3, 112, 112].
    public static func modelInput(_ image: RGBImage) -> Tensor {
        normalize(resizedForModel(image))
    }

    /// `image` resized to 112x112 with PIL's bilinear filter (unchanged when already 112x112).
    public static func resizedForModel(_ image: RGBImage) -> RGBImage {
        Resize.bilinear(image, width: inputSize, height: inputSize)
    }

    /// A batch of model inputs: each image resized to 112x112 and normalised, [N, 3, 112, 112].
    public static func batch(_ images: [RGBImage]) -> Tensor {
        let sample = 3 * inputSize * inputSize
        var data = [Float](repeating: 0, count: images.count * sample)
        data.withUnsafeMutableBufferPointer { buffer in
            for (n, image) in images.enumerated() {
                let slot = UnsafeMutableBufferPointer(rebasing: buffer[n * sample ..< (n + 1) * sample])
                normalize(resizedForModel(image), into: slot)
            }
        }
        return Tensor(shape: [images.count, 3, inputSize, inputSize], data: data)
    }
}
