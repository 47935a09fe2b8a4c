@_exported import FERFaces
import Foundation

/// Settings of the whole-photo pipeline (spec: detection.md; the product's choices in issue 12).
public struct FaceDetectionOptions: Sendable, Equatable {
    /// Long side of the detector input in pixels: larger photos are shrunk to it, smaller ones are
    /// never enlarged. At most ``maxDetectSize``.
    public var detectSize: Int
    /// Largest ``detectSize``: 4096. The detector's buffers cost about 47 bytes per pixel of its input,
    /// so a square photo at 4096 takes about 0.8 GB (`fer-infer --detect-size 4096` on a 4096x4096 JPEG:
    /// 824 MB peak resident, 1.5 s; at 2048, 285 MB); without a bound, `--detect-size 8000` on an
    /// 8000x8000 photo took 3 GB and 43 s.
    public static let maxDetectSize = 4096
    /// Faces need a score above this (RetinaFace's face probability).
    public var threshold: Double
    /// Non-maximum suppression drops a face whose IoU with a better one is above this.
    public var nmsIoU: Double
    /// At most this many faces are aligned and classified per photo, the best first; the others
    /// are left out (``PhotoAnalysis/truncated``). Bounds the time a photo full of detections costs.
    public var maxFaces: Int

    public init(detectSize: Int = 640, threshold: Double = 0.6, nmsIoU: Double = 0.35, maxFaces: Int = 100) {
        self.detectSize = detectSize
        self.threshold = threshold
        self.nmsIoU = nmsIoU
        self.maxFaces = maxFaces
    }

    /// Throws ``FaceAnalysisError/invalidOption(_:)`` naming the first value out of range.
    public func validate() throws {
        guard detectSize >= 16 else { throw FaceAnalysisError.invalidOption("detect size \(detectSize) is below 16 pixels") }
        guard detectSize <= Self.maxDetectSize else {
            throw FaceAnalysisError.invalidOption("detect size \(detectSize) is over the maximum of \(Self.maxDetectSize) pixels")
        }
        guard threshold.isFinite, threshold >= 0, threshold < 1 else {
            throw FaceAnalysisError.invalidOption("detection threshold \(threshold) is not in [0, 1)")
        }
        guard nmsIoU.isFinite, nmsIoU >= 0, nmsIoU <= 1 else { throw FaceAnalysisError.invalidOption("NMS IoU \(nmsIoU) is not in [0, 1]") }
        guard maxFaces >= 1 else { throw FaceAnalysisError.invalidOption("max faces \(maxFaces) is below 1") }
    }
}

/// One face of a photo: where it is, its 112x112 crop and what the classifier made of it.
public struct AnalyzedFace: Sendable {
    /// Box, score and five landmarks, in the photo's pixels.
    public let face: Face
    /// The aligned crop, the matrix and the template that made it.
    public let alignment: FaceAlignment.Aligned
    /// The classifier's result for the crop (an embedding for LFN/MFN models).
    public let classification: Classification
}

/// What the detector found in one photo.
public struct FaceDetection: Sendable {
    /// Faces in descending score order, at most ``FaceDetectionOptions/maxFaces``.
    public let faces: [Face]
    /// True when more faces were above the threshold than ``FaceDetectionOptions/maxFaces``.
    public let truncated: Bool
    /// The detector input's size (the photo shrunk to ``FaceDetectionOptions/detectSize``).
    public let detectorWidth: Int
    public let detectorHeight: Int
    /// Detector input, network and decoding with NMS, in milliseconds.
    public let milliseconds: Double
    /// The network alone (part of ``milliseconds``).
    public let networkMilliseconds: Double
}

/// The faces of one photo, best first.
public struct PhotoAnalysis: Sendable {
    /// The photo's size in pixels.
    public let width: Int
    public let height: Int
    /// The detector input's size (the photo shrunk to ``FaceDetectionOptions/detectSize``).
    public let detectorWidth: Int
    public let detectorHeight: Int
    /// Faces in descending score order, at most ``FaceDetectionOptions/maxFaces``.
    public let faces: [AnalyzedFace]
    /// True when the photo had more faces above the threshold than ``FaceDetectionOptions/maxFaces``:
    /// the worst ones were left out.
    public let truncated: Bool
    /// Milliseconds per step.
    public let timing: Timing

    public struct Timing: Sendable {
        /// Detector input, network and decoding with NMS.
        public var detect: Double
        /// The network alone (part of ``detect``).
        public var detectNetwork: Double
        /// Template choice and warp of every face.
        public var align: Double
        /// The classifier on every crop.
        public var classify: Double
    }
}

/// Why a photo could not be analysed, beyond image, engine and classifier errors.
public enum FaceAnalysisError: Error, Equatable, CustomStringConvertible {
    /// The detector model is not RetinaFace.
    case notADetector(String)
    /// An option is out of range.
    case invalidOption(String)
    /// Face `index` (0-based, score order) could not be aligned or classified.
    case face(index: Int, problem: String)

    public var description: String {
        switch self {
        case .notADetector(let architecture): return "\(architecture) is not a face detector (expected RetinaFace)"
        case .invalidOption(let what): return "invalid option: \(what)"
        case .face(let index, let problem): return "face \(index + 1): \(problem)"
        }
    }
}

/// Finds every face in a photo with RetinaFace, aligns each to 112x112 on the five landmarks as the
/// LFNSB authors did, and classifies the crops. Thread-safe: any number of threads may call
/// ``analyze(_:)`` at once; each call borrows detector buffers for its photo's size from a bounded pool.
///
/// ```swift
/// let classifier = try FERClassifier(contentsOf: "weights/lfnsb7-seeded.pth")
/// let analyzer = try FaceAnalyzer(classifier: classifier)   // weights/retinaface-mobilenet0.25.pth
/// for face in try analyzer.analyze(encoded: jpegBytes).faces {
///     print(face.face.box, face.classification.label!)
/// }
/// ```
public final class FaceAnalyzer: Sendable {
    /// The face detector.
    public let detector: FERModel
    /// The classifier (or embedder) run on every aligned crop.
    public let classifier: FERClassifier
    /// Detection settings.
    public let options: FaceDetectionOptions
    private let sessions: SessionPool

    /// Combines a RetinaFace `detector` with `classifier`. The detector runs on `threads` threads
    /// (the classifier on its own). Throws ``FaceAnalysisError`` for another model or bad options.
    public init(detector: FERModel, classifier: FERClassifier, options: FaceDetectionOptions = .init(), threads: Int = 1) throws {
        precondition(threads >= 1, "threads must be at least 1")
        guard detector.architecture == .retinaFace else { throw FaceAnalysisError.notADetector(detector.architecture.description) }
        try options.validate()
        self.detector = detector
        self.classifier = classifier
        self.options = options
        sessions = SessionPool(model: detector, batch: 1, threads: threads,
                               maxIdle: FERClassifier.defaultMaxIdleSessions(threads: threads))
    }

    /// Loads the detector from `detectorPath` (default: ``DefaultModel/resolveDetector(_:)``).
    public convenience init(detectorPath: String? = nil, classifier: FERClassifier,
                            options: FaceDetectionOptions = .init(), threads: Int = 1) throws {
        let path = try DefaultModel.resolveDetector(detectorPath)
        try self.init(detector: try FERModel(contentsOf: path), classifier: classifier, options: options, threads: threads)
    }

    /// The faces in `image` (see ``FaceDetection``).
    public func detect(_ image: RGBImage) throws -> FaceDetection {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let prepared = try DetectorInput.prepare(image, maxSide: options.detectSize)
        let (faces, truncated, networkNs): ([Face], Bool, UInt64) = try sessions.withSession(height: prepared.height, width: prepared.width) { session in
            let n0 = DispatchTime.now().uptimeNanoseconds
            try prepared.input.withUnsafeBufferPointer { try session.run(nhwc: $0, batch: 1) }
            let networkNs = DispatchTime.now().uptimeNanoseconds - n0
            guard let boxes = session.output("boxes"), let scores = session.output("scores"),
                  let landmarks = session.output("landmarks") else {
                throw FaceAnalysisError.notADetector("a model without boxes, scores and landmarks outputs")
            }
            let found = try RetinaFaceDecoder.decode(
                boxes: boxes, scores: scores, landmarks: landmarks, height: prepared.height, width: prepared.width,
                scaleX: prepared.scaleX, scaleY: prepared.scaleY, threshold: options.threshold, nmsIoU: options.nmsIoU,
                maxFaces: options.maxFaces)
            return (found.faces, found.truncated, networkNs)
        }
        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        return FaceDetection(faces: faces, truncated: truncated, detectorWidth: prepared.width, detectorHeight: prepared.height,
                             milliseconds: ms, networkMilliseconds: Double(networkNs) / 1e6)
    }

    /// Detects, aligns and classifies every face of `image` (see ``detect(_:)``).
    public func analyze(_ image: RGBImage) throws -> PhotoAnalysis {
        let detection = try detect(image)
        let t1 = DispatchTime.now().uptimeNanoseconds
        var aligned: [FaceAlignment.Aligned] = []
        aligned.reserveCapacity(detection.faces.count)
        for (i, face) in detection.faces.enumerated() {
            do { aligned.append(try FaceAlignment.align(image, landmarks: face.landmarks)) } catch {
                throw FaceAnalysisError.face(index: i, problem: "\(error)")
            }
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        var classifications: [Classification] = []
        if !aligned.isEmpty {
            let crops = Preprocessing.batchChannelsLast(aligned.map(\.image))
            for (i, outcome) in try classifier.classifyEach(channelsLast: crops).enumerated() {
                switch outcome {
                case .success(let result): classifications.append(result)
                case .failure(let error): throw FaceAnalysisError.face(index: i, problem: error.problem)
                }
            }
        }
        let t3 = DispatchTime.now().uptimeNanoseconds
        let faces = (0..<aligned.count).map {
            AnalyzedFace(face: detection.faces[$0], alignment: aligned[$0], classification: classifications[$0])
        }
        return PhotoAnalysis(
            width: image.width, height: image.height, detectorWidth: detection.detectorWidth, detectorHeight: detection.detectorHeight,
            faces: faces, truncated: detection.truncated,
            timing: .init(detect: detection.milliseconds, detectNetwork: detection.networkMilliseconds,
                          align: Double(t2 - t1) / 1e6, classify: Double(t3 - t2) / 1e6))
    }

    /// Decodes PNG or JPEG bytes (throws ``ImageError`` for anything else) as OpenCV's `imread` reads
    /// them, as the authors' detection did (``ImageDecodingOptions/forPhotos``: `decoding` with its
    /// ``ImageDecodingOptions/reading`` set to ``PixelReading/opencv``), and analyses the photo.
    public func analyze(encoded bytes: [UInt8], options decoding: ImageDecodingOptions = .default) throws -> PhotoAnalysis {
        try analyze(ImageDecoder.decode(bytes: bytes, options: decoding.forPhotos).image)
    }
}

extension AnalyzedFace {
    /// The JSON fields `fer-infer --json` and `fer-serve` report for one face: `box`, `score`,
    /// `landmarks` ([[x, y]] x 5) and the classification's fields (``Classification/jsonFields(labels:)``).
    public func jsonFields(labels: [String]?) -> [String: Any] {
        var record = classification.jsonFields(labels: labels)
        record["box"] = face.box
        record["score"] = face.score
        record["landmarks"] = face.landmarks.map { [$0.x, $0.y] }
        return record
    }
}

extension PhotoAnalysis {
    /// The JSON fields reported for one photo: `width`, `height`, `detector_input` ([width, height]),
    /// `faces_truncated` and `faces` (``AnalyzedFace/jsonFields(labels:)``, best first, each with its
    /// number `face`: from 1, as every surface that names a face counts them).
    public func jsonFields(labels: [String]?) -> [String: Any] {
        ["width": width, "height": height, "detector_input": [detectorWidth, detectorHeight],
         "faces_truncated": truncated,
         "faces": faces.enumerated().map { k, face in face.jsonFields(labels: labels).merging(["face": k + 1]) { $1 } }]
    }
}
