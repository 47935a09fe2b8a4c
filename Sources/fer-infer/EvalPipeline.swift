import Dispatch
import FEREvaluation
import FERImage
import FERRuntime
import FERTensor
import Foundation

/// The buffers the decoding threads of one batch write, each thread its own elements.
private struct SharedBuffers: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<Result<(prepared: EvalPipeline.Preparation, notes: [String]), EvalFailure>?>
    let outputs: UnsafeMutableBufferPointer<Float>
}

/// Why an image of the dataset was not evaluated.
struct EvalFailure: Error {
    let message: String
}

/// Decodes and preprocesses a dataset's images in batches on a thread of its own while the
/// caller's thread classifies the previous batch (at most `lookahead` batches decoded ahead), or,
/// with `overlap` false, decodes each batch just before classifying it.
///
/// Decoding a batch is spread over `decodeThreads` threads. Each batch's input is one contiguous
/// channel-last buffer `[n, 112, 112, 3]`, normalised. 112x112 images are used as they are; others
/// are resized with PIL's bilinear arithmetic (``Preprocessing/modelInputChannelsLast(_:)``), as the
/// authors' evaluation does, or, given a face analyzer, replaced by their largest face found by
/// RetinaFace and aligned to 112x112 on its landmarks (an image without a face fails).
final class EvalPipeline: @unchecked Sendable {
    // Safety of @unchecked Sendable: `slots` and `finished` are only touched under `condition`.

    /// A decoded batch: the images that decoded (their dataset indices and their samples), and
    /// those that did not.
    struct Batch {
        var indices: [Int] = []
        var input: [Float] = []
        var failures: [(Int, String)] = []
        var resized = 0
        var detected = 0
        var notes: [String] = []
    }

    /// What was done to an image to make it a 112x112 input.
    enum Preparation: Sendable {
        case asIs, resized, detected
    }

    private let images: [LabelledImage]
    private let batchSize: Int
    private let decodeThreads: Int
    private let options: ImageDecodingOptions
    private let analyzer: FaceAnalyzer?
    private let lookahead = 2
    private let condition = NSCondition()
    private var slots: [Batch] = []
    private var finished = false

    init(images: [LabelledImage], batchSize: Int, decodeThreads: Int, options: ImageDecodingOptions,
         analyzer: FaceAnalyzer? = nil) {
        self.images = images
        self.analyzer = analyzer
        self.batchSize = batchSize
        self.decodeThreads = decodeThreads
        self.options = options
    }

    /// Calls `body` with each batch in dataset order; decoding runs ahead on another thread when
    /// `overlap` is true. `body` may throw to stop early.
    func run(overlap: Bool, _ body: (Batch) throws -> Void) rethrows {
        let starts = Array(stride(from: 0, to: images.count, by: batchSize))
        guard overlap else {
            for start in starts { try body(decode(start)) }
            return
        }
        let producer = Thread { [self] in
            for start in starts {
                let batch = decode(start)
                condition.lock()
                while slots.count >= lookahead && !finished { condition.wait() }
                if finished {
                    condition.unlock()
                    return
                }
                slots.append(batch)
                condition.signal()
                condition.unlock()
            }
        }
        producer.stackSize = 1 << 22
        producer.start()
        defer {
            // Stops the producer when `body` threw before the end.
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        for _ in starts {
            condition.lock()
            while slots.isEmpty { condition.wait() }
            let batch = slots.removeFirst()
            condition.signal()
            condition.unlock()
            try body(batch)
        }
    }

    /// The area of a box [x1, y1, x2, y2].
    private static func area(_ box: [Double]) -> Double {
        box.count == 4 ? max(0, box[2] - box[0]) * max(0, box[3] - box[1]) : 0
    }

    /// Decodes images start..<start+batchSize.
    private func decode(_ start: Int) -> Batch {
        let end = min(start + batchSize, images.count)
        let count = end - start
        let plane = ModelInput.shape.reduce(1, *)
        // Each image decodes into its own slot; the slots are then packed in order.
        let outputs = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * plane)
        defer { outputs.deallocate() }
        var results = [Result<(prepared: Preparation, notes: [String]), EvalFailure>?](repeating: nil, count: count)
        results.withUnsafeMutableBufferPointer { slots in
            // Each decoding thread writes only its own images' slots.
            let shared = SharedBuffers(slots: slots, outputs: outputs)
            let work: @Sendable (Int) -> Void = { i in
                let image = self.images[start + i]
                let decoded: DecodedImage
                do { decoded = try ImageDecoder.decode(pathBytes: image.path, options: self.options) } catch {
                    shared.slots[i] = .failure(EvalFailure(message: "\(error)"))
                    return
                }
                var input = decoded.image
                var preparation = decoded.needsResize ? Preparation.resized : .asIs
                if decoded.needsResize, let analyzer = self.analyzer {
                    do {
                        // Detected on OpenCV's reading of the file, as the authors did.
                        let photo = decoded.readingMatters
                            ? try ImageDecoder.decode(pathBytes: image.path, options: self.options.forPhotos).image : decoded.image
                        guard let face = try analyzer.detect(photo).faces.max(by: { Self.area($0.box) < Self.area($1.box) }) else {
                            shared.slots[i] = .failure(EvalFailure(message: "\(image.displayPath): no face found (--detect)"))
                            return
                        }
                        input = try FaceAlignment.align(photo, landmarks: face.landmarks).image
                        preparation = .detected
                    } catch {
                        shared.slots[i] = .failure(EvalFailure(message: "\(image.displayPath): face detection failed: \(error)"))
                        return
                    }
                }
                let tensor = Preprocessing.modelInputChannelsLast(input)
                let target = UnsafeMutableBufferPointer(rebasing: shared.outputs[i * plane..<(i + 1) * plane])
                _ = target.initialize(from: tensor.data)
                // Resized images are reported as a count, not one note each.
                let notes = decoded.notes.filter {
                    if case .resizedToModelInput = $0.kind { return false }
                    return true
                }.map(\.description)
                shared.slots[i] = .success((preparation, notes))
            }
            if decodeThreads > 1 && count > 1 {
                let chunks = min(decodeThreads, count)
                DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                    var i = chunk
                    while i < count {
                        work(i)
                        i += chunks
                    }
                }
            } else {
                for i in 0..<count { work(i) }
            }
        }
        var batch = Batch()
        batch.input.reserveCapacity(count * plane)
        for i in 0..<count {
            switch results[i]! {
            case .success(let decoded):
                batch.indices.append(start + i)
                batch.input.append(contentsOf: UnsafeBufferPointer(rebasing: outputs[i * plane..<(i + 1) * plane]))
                switch decoded.prepared {
                case .asIs: break
                case .resized: batch.resized += 1
                case .detected: batch.detected += 1
                }
                batch.notes += decoded.notes
            case .failure(let failure):
                batch.failures.append((start + i, failure.message))
            }
        }
        return batch
    }
}
