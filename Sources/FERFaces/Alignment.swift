import FERImage

/// A point in pixel coordinates.
public struct FacePoint: Equatable, Sendable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) { self.x = x; self.y = y }
}

/// Five-point face alignment to 112x112 as the LFNSB authors did it (spec: detection.md, "Alignment").
public enum FaceAlignment {
    /// Side of the aligned crop.
    public static let size = 112

    /// The five templates (left eye, right eye, nose, left and right mouth corner) for 112x112, from
    /// left profile (0) to right profile (4); 2 is frontal.
    public static let templates: [[FacePoint]] = [
        [(55.550, 49.477), (62.116, 49.339), (38.075, 70.237), (55.017, 92.262), (61.466, 92.979)],
        [(47.241, 48.598), (72.887, 49.540), (40.555, 71.067), (47.423, 93.643), (71.236, 94.353)],
        [(33.566, 40.559), (78.321, 40.559), (55.338, 64.967), (38.479, 90.276), (73.591, 90.276)],
        [(39.516, 49.540), (65.162, 48.598), (71.849, 71.067), (41.167, 94.353), (64.980, 93.643)],
        [(50.225, 49.339), (56.791, 49.477), (74.266, 70.237), (50.875, 92.979), (65.317, 92.262)],
    ].map { $0.map { FacePoint(x: $0.0, y: $0.1) } }

    /// The least-squares similarity transform (rotation, uniform scale, translation; no reflection)
    /// taking `source` to `target`: Umeyama's estimate, as scikit-image's `SimilarityTransform`.
    ///
    /// In two dimensions it has a closed form: with the centred points as complex numbers z (source)
    /// and w (target), the optimum is w = c * z with c = sum(conj(z) * w) / sum(|z|^2); the matrix is
    /// [[Re c, -Im c, tx], [Im c, Re c, ty]] with t = mean(target) - c * mean(source).
    ///
    /// Throws ``FaceError/nonFinite(_:)`` for NaN or infinite coordinates,
    /// ``FaceError/invalidArgument(_:)`` for different counts or fewer than two points, and
    /// ``FaceError/degenerateLandmarks(_:)`` when the source points coincide or the transform would
    /// collapse the plane (scale 0).
    public static func similarity(from source: [FacePoint], to target: [FacePoint]) throws -> AffineMatrix {
        guard source.count == target.count, source.count >= 2 else {
            throw FaceError.invalidArgument("\(source.count) source and \(target.count) target points")
        }
        guard (source + target).allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else {
            throw FaceError.nonFinite("landmarks")
        }
        let n = Double(source.count)
        let sx = source.reduce(0) { $0 + $1.x } / n, sy = source.reduce(0) { $0 + $1.y } / n
        let tx = target.reduce(0) { $0 + $1.x } / n, ty = target.reduce(0) { $0 + $1.y } / n
        var norm = 0.0, re = 0.0, im = 0.0
        for (s, t) in zip(source, target) {
            let zx = s.x - sx, zy = s.y - sy, wx = t.x - tx, wy = t.y - ty
            norm += zx * zx + zy * zy
            re += zx * wx + zy * wy   // Re(conj(z) * w)
            im += zx * wy - zy * wx   // Im(conj(z) * w)
        }
        guard norm > 0 else { throw FaceError.degenerateLandmarks("all \(source.count) points coincide") }
        let a = re / norm, b = im / norm
        guard a.isFinite, b.isFinite, a != 0 || b != 0 else {
            throw FaceError.degenerateLandmarks("the similarity transform has scale 0")
        }
        return AffineMatrix(a, -b, tx - (a * sx - b * sy), b, a, ty - (b * sx + a * sy))
    }

    /// The result of ``align(_:landmarks:truncatingLandmarks:)``.
    public struct Aligned: Sendable {
        /// The 112x112 crop.
        public var image: RGBImage
        /// The matrix that made it (original image to crop).
        public var matrix: AffineMatrix
        /// Which of ``templates`` was chosen.
        public var template: Int
        /// Sum over the five points of the distance between the transformed landmark and the template's.
        public var error: Double
    }

    /// The template closest to `landmarks` (five points: eyes, nose, mouth corners): for each template the
    /// similarity transform from the landmarks to it, then the sum of point distances after
    /// transforming; the smallest sum wins (the first on ties). Errors as ``similarity(from:to:)``.
    public static func bestTemplate(for landmarks: [FacePoint]) throws -> (matrix: AffineMatrix, template: Int, error: Double) {
        guard landmarks.count == 5 else { throw FaceError.invalidArgument("\(landmarks.count) landmarks, expected 5") }
        var best: (matrix: AffineMatrix, template: Int, error: Double)?
        for (i, template) in templates.enumerated() {
            let m = try similarity(from: landmarks, to: template)
            var error = 0.0
            for (p, q) in zip(landmarks, template) {
                let r = m.apply(p)
                error += ((r.x - q.x) * (r.x - q.x) + (r.y - q.y) * (r.y - q.y)).squareRoot()
            }
            if best == nil || error < best!.error { best = (m, i, error) }
        }
        return best!
    }

    /// Aligns the face with `landmarks` (in `image`'s pixels) to a 112x112 crop: ``bestTemplate(for:)``,
    /// then ``WarpAffine/linear(_:matrix:width:height:)`` of the original image.
    ///
    /// The product aligns the floating-point landmarks; `truncatingLandmarks` turns them into integers
    /// first, toward zero, as the authors' one-off script did.
    public static func align(_ image: RGBImage, landmarks: [FacePoint], truncatingLandmarks: Bool = false) throws -> Aligned {
        guard landmarks.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else { throw FaceError.nonFinite("landmarks") }
        let points = truncatingLandmarks
            ? landmarks.map { FacePoint(x: $0.x.rounded(.towardZero), y: $0.y.rounded(.towardZero)) } : landmarks
        let (matrix, template, error) = try bestTemplate(for: points)
        let crop = try WarpAffine.linear(image, matrix: matrix, width: size, height: size)
        return Aligned(image: crop, matrix: matrix, template: template, error: error)
    }
}
