import Foundation

/// A detected face, in original-image pixels.
public struct Face: Equatable, Sendable {
    /// [x1, y1, x2, y2].
    public var box: [Double]
    /// The face probability (softmax index 1).
    public var score: Double
    /// Five points: left eye, right eye, nose, left and right mouth corner; floating point.
    public var landmarks: [FacePoint]

    public init(box: [Double], score: Double, landmarks: [FacePoint]) {
        self.box = box
        self.score = score
        self.landmarks = landmarks
    }
}

/// One RetinaFace anchor: centre and size in units of the network input's width and height.
public struct Prior: Equatable, Sendable {
    public var cx, cy, w, h: Double
    public init(cx: Double, cy: Double, w: Double, h: Double) {
        self.cx = cx
        self.cy = cy
        self.w = w
        self.h = h
    }
}

/// RetinaFace post-processing (spec: detection.md, "Pre- and post-processing"): priors, decoding with
/// variances (0.1, 0.2), score threshold, greedy NMS. All in Double, as the float64 reference.
public enum RetinaFaceDecoder {
    /// (step, anchor sizes) per level, in head order.
    public static let levels: [(step: Int, sizes: [Int])] = [(8, [16, 32]), (16, [64, 128]), (32, [256, 512])]
    /// Variances of the centre and size regressions.
    public static let variances = (0.1, 0.2)

    /// The anchors of a `height` x `width` input, in head order: levels, then rows i < ceil(height / step),
    /// columns j < ceil(width / step), sizes; (cx, cy, w, h) = ((j + 0.5) * step / width,
    /// (i + 0.5) * step / height, size / width, size / height).
    public static func priors(height: Int, width: Int) throws -> [Prior] {
        guard height > 0, width > 0 else { throw FaceError.invalidArgument("input size \(width)x\(height)") }
        var out: [Prior] = []
        out.reserveCapacity(anchorCount(height: height, width: width))
        let h = Double(height), w = Double(width)
        for (step, sizes) in levels {
            let s = Double(step)
            for i in 0..<ceilDiv(height, step) {
                for j in 0..<ceilDiv(width, step) {
                    for size in sizes {
                        out.append(Prior(cx: (Double(j) + 0.5) * s / w, cy: (Double(i) + 0.5) * s / h,
                                         w: Double(size) / w, h: Double(size) / h))
                    }
                }
            }
        }
        return out
    }

    /// How many anchors (rows of each head output) a `height` x `width` input has.
    public static func anchorCount(height: Int, width: Int) -> Int {
        levels.reduce(0) { $0 + ceilDiv(height, $1.step) * ceilDiv(width, $1.step) * $1.sizes.count }
    }

    static func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }

    /// The faces of one image, best first.
    public struct Detections: Sendable, Equatable {
        /// Faces in descending score order.
        public var faces: [Face]
        /// True when more faces survived the threshold and NMS than the `maxFaces` asked for.
        public var truncated: Bool
    }

    /// The faces in RetinaFace's three outputs for one image.
    ///
    /// - `boxes`: (A, 4) raw box regressions; `scores`: (A, 2) softmax probabilities, index 1 = face;
    ///   `landmarks`: (A, 10) raw landmark regressions; A = ``anchorCount(height:width:)`` of the
    ///   network input `height` x `width`.
    /// - Network coordinates are divided by `scaleX`, `scaleY` (``DetectorInput``'s) to give
    ///   original-image pixels.
    /// - Keeps scores > `threshold`; greedy NMS in descending score order (stable) drops any box whose
    ///   IoU with a kept one is > `nmsIoU`, areas (x2 - x1 + 1) * (y2 - y1 + 1); faces best first,
    ///   at most `maxFaces` (NMS stops there, so its cost is bounded by anchors x `maxFaces`).
    ///
    /// Throws ``FaceError/shapeMismatch(name:expected:actual:)`` for wrong lengths,
    /// ``FaceError/invalidArgument(_:)`` for non-positive sizes, scales or `maxFaces`, and
    /// ``FaceError/nonFinite(_:)`` when a face above the threshold decodes to a NaN or infinite coordinate.
    public static func decode(boxes: UnsafeBufferPointer<Float>, scores: UnsafeBufferPointer<Float>,
                              landmarks: UnsafeBufferPointer<Float>, height: Int, width: Int,
                              scaleX: Double = 1, scaleY: Double = 1, threshold: Double = 0.6,
                              nmsIoU: Double = 0.35, maxFaces: Int = .max) throws -> Detections {
        guard scaleX > 0, scaleY > 0, scaleX.isFinite, scaleY.isFinite else {
            throw FaceError.invalidArgument("scale factors \(scaleX), \(scaleY)")
        }
        guard maxFaces >= 1 else { throw FaceError.invalidArgument("maxFaces \(maxFaces) < 1") }
        let pr = try priors(height: height, width: width)
        let a = pr.count
        if boxes.count != a * 4 { throw FaceError.shapeMismatch(name: "boxes", expected: a * 4, actual: boxes.count) }
        if scores.count != a * 2 { throw FaceError.shapeMismatch(name: "scores", expected: a * 2, actual: scores.count) }
        if landmarks.count != a * 10 {
            throw FaceError.shapeMismatch(name: "landmarks", expected: a * 10, actual: landmarks.count)
        }
        let (v0, v1) = variances
        let w = Double(width), h = Double(height)
        var candidates: [Face] = []
        for k in 0..<a where Double(scores[2 * k + 1]) > threshold {
            let p = pr[k]
            let d0 = Double(boxes[4 * k]), d1 = Double(boxes[4 * k + 1])
            let d2 = Double(boxes[4 * k + 2]), d3 = Double(boxes[4 * k + 3])
            let cx = p.cx + d0 * v0 * p.w, cy = p.cy + d1 * v0 * p.h
            let bw = p.w * exp(d2 * v1), bh = p.h * exp(d3 * v1)
            let box = [(cx - bw / 2) * w / scaleX, (cy - bh / 2) * h / scaleY, (cx + bw / 2) * w / scaleX,
                       (cy + bh / 2) * h / scaleY]
            var points: [FacePoint] = []
            points.reserveCapacity(5)
            for m in 0..<5 {
                let lx = Double(landmarks[10 * k + 2 * m]), ly = Double(landmarks[10 * k + 2 * m + 1])
                points.append(FacePoint(x: (p.cx + lx * v0 * p.w) * w / scaleX, y: (p.cy + ly * v0 * p.h) * h / scaleY))
            }
            guard box.allSatisfy({ $0.isFinite }), points.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else {
                throw FaceError.nonFinite("decoded face at anchor \(k)")
            }
            candidates.append(Face(box: box, score: Double(scores[2 * k + 1]), landmarks: points))
        }
        return nms(candidates, iou: nmsIoU, limit: maxFaces)
    }

    /// ``decode(boxes:scores:landmarks:height:width:scaleX:scaleY:threshold:nmsIoU:maxFaces:)`` on arrays,
    /// every face kept.
    public static func decode(boxes: [Float], scores: [Float], landmarks: [Float], height: Int, width: Int,
                              scaleX: Double = 1, scaleY: Double = 1, threshold: Double = 0.6,
                              nmsIoU: Double = 0.35) throws -> [Face] {
        try boxes.withUnsafeBufferPointer { b in
            try scores.withUnsafeBufferPointer { s in
                try landmarks.withUnsafeBufferPointer { l in
                    try decode(boxes: b, scores: s, landmarks: l, height: height, width: width, scaleX: scaleX,
                               scaleY: scaleY, threshold: threshold, nmsIoU: nmsIoU).faces
                }
            }
        }
    }

    /// Greedy NMS: faces in descending score order (stable); each kept face removes the later ones whose
    /// IoU with it is > `iou`, areas (x2 - x1 + 1) * (y2 - y1 + 1).
    public static func nms(_ faces: [Face], iou: Double) -> [Face] {
        nms(faces, iou: iou, limit: .max).faces
    }

    /// ``nms(_:iou:)`` stopping once `limit` faces are kept; `truncated` tells whether any face was left.
    public static func nms(_ faces: [Face], iou: Double, limit: Int) -> Detections {
        let order = faces.indices.sorted { faces[$0].score > faces[$1].score || (faces[$0].score == faces[$1].score && $0 < $1) }
        var remaining = order.map { faces[$0] }[...]
        var kept: [Face] = []
        while let best = remaining.first {
            if kept.count == limit { return Detections(faces: kept, truncated: true) }
            remaining = remaining.dropFirst()
            kept.append(best)
            let b = best.box
            let areaB = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            remaining.removeAll { f in
                let c = f.box
                let iw = max(0.0, min(b[2], c[2]) - max(b[0], c[0]) + 1)
                let ih = max(0.0, min(b[3], c[3]) - max(b[1], c[1]) + 1)
                let inter = iw * ih
                let areaC = (c[2] - c[0] + 1) * (c[3] - c[1] + 1)
                return !(inter / (areaB + areaC - inter) <= iou)
            }
        }
        return Detections(faces: kept, truncated: false)
    }
}
