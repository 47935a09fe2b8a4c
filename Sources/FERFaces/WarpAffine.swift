import FERImage

/// A 2x3 affine matrix, row-major as OpenCV takes it: (x, y) maps to
/// (m00 * x + m01 * y + m02, m10 * x + m11 * y + m12).
public struct AffineMatrix: Equatable, Sendable {
    public var m00, m01, m02, m10, m11, m12: Double

    public init(_ m00: Double, _ m01: Double, _ m02: Double, _ m10: Double, _ m11: Double, _ m12: Double) {
        (self.m00, self.m01, self.m02, self.m10, self.m11, self.m12) = (m00, m01, m02, m10, m11, m12)
    }

    /// The six entries, row-major.
    public var entries: [Double] { [m00, m01, m02, m10, m11, m12] }

    /// True when every entry is finite.
    public var isFinite: Bool { entries.allSatisfy { $0.isFinite } }

    /// The image of `p`.
    public func apply(_ p: FacePoint) -> FacePoint {
        FacePoint(x: m00 * p.x + m01 * p.y + m02, y: m10 * p.x + m11 * p.y + m12)
    }

    /// The inverse as OpenCV's warpAffine computes it (Double; a singular matrix gives all zeros,
    /// as OpenCV's does).
    public var inverse: AffineMatrix {
        var d = m00 * m11 - m01 * m10
        d = d != 0 ? 1.0 / d : 0.0
        let a11 = m11 * d, a22 = m00 * d
        let a12 = -m01 * d, a21 = -m10 * d
        let b1 = -a11 * m02 - a12 * m12
        let b2 = -a21 * m02 - a22 * m12
        return AffineMatrix(a11, a12, b1, a21, a22, b2)
    }
}

/// OpenCV's `cv2.warpAffine(img, M, (width, height))` on 8-bit images (INTER_LINEAR, BORDER_CONSTANT 0),
/// to the bit.
///
/// opencv-python 5.0.0 works in float32, not in the 1/32-pixel fixed point of OpenCV 3/4 (found by
/// warping float ramps, whose outputs are the source coordinates, and 8-bit patterns; see
/// tools/reference/make_face_fixtures.py). For destination pixel (x, y), with N = the inverse of M
/// (``AffineMatrix/inverse``) rounded to Float:
///
/// - row term r = n01 * y + n02 (a Float multiply, then a Float add);
///   sx = fma(n00, x, r) (one rounding); the same for sy with n10, n11, n12;
/// - ix = floor(sx), ax = sx - ix (Float); likewise iy, ay; the four taps (ix, iy), (ix + 1, iy),
///   (ix, iy + 1), (ix + 1, iy + 1), each 0 outside the image;
/// - v0 = fma(ax, p01 - p00, p00), v1 = fma(ax, p11 - p10, p10), v = fma(ay, v1 - v0, v0) (Float,
///   each fused: unfused arithmetic differs on about 1 in 2.5 million samples that sit at a .5);
///   out = rint(v) (half to even), clamped to 0...255.
public enum WarpAffine {
    /// Warps `image` with `matrix` into a `width` x `height` image.
    /// Throws ``FaceError/invalidArgument(_:)`` for a non-positive size and ``FaceError/nonFinite(_:)``
    /// for a matrix with NaN or infinite entries.
    public static func linear(_ image: RGBImage, matrix: AffineMatrix, width: Int, height: Int) throws -> RGBImage {
        guard width > 0, height > 0 else { throw FaceError.invalidArgument("output size \(width)x\(height)") }
        guard matrix.isFinite else { throw FaceError.nonFinite("affine matrix \(matrix.entries)") }
        let n = matrix.inverse
        let n00 = Float(n.m00), n01 = Float(n.m01), n02 = Float(n.m02)
        let n10 = Float(n.m10), n11 = Float(n.m11), n12 = Float(n.m12)
        let w = image.width, h = image.height
        // Coordinates beyond these read only border taps (and keep Int(...) in range).
        let xLimit = Float(w) + 1, yLimit = Float(h) + 1
        var out = [UInt8](repeating: 0, count: width * height * 3)  // (height, width, 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    let fy = Float(y)
                    let rx = n01 * fy + n02
                    let ry = n11 * fy + n12
                    for x in 0..<width {
                        let fx = Float(x)
                        let sx = rx.addingProduct(n00, fx)
                        let sy = ry.addingProduct(n10, fx)
                        // NaN (from overflowing entries) fails these tests too.
                        guard sx > -2, sx < xLimit, sy > -2, sy < yLimit else { continue }
                        let fx0 = sx.rounded(.down), fy0 = sy.rounded(.down)
                        let ax = sx - fx0, ay = sy - fy0
                        let ix = Int(fx0), iy = Int(fy0)
                        let o = dst.baseAddress! + (y * width + x) * 3
                        // The four taps' offsets, or -1 outside the image (read as 0).
                        let inX0 = ix >= 0 && ix < w, inX1 = ix + 1 >= 0 && ix + 1 < w
                        let inY0 = iy >= 0 && iy < h, inY1 = iy + 1 >= 0 && iy + 1 < h
                        let row0 = iy * w, row1 = (iy + 1) * w
                        let t00 = inX0 && inY0 ? (row0 + ix) * 3 : -1, t01 = inX1 && inY0 ? (row0 + ix + 1) * 3 : -1
                        let t10 = inX0 && inY1 ? (row1 + ix) * 3 : -1, t11 = inX1 && inY1 ? (row1 + ix + 1) * 3 : -1
                        for c in 0..<3 {
                            let p00: Float = t00 >= 0 ? Float(src[t00 + c]) : 0, p01: Float = t01 >= 0 ? Float(src[t01 + c]) : 0
                            let p10: Float = t10 >= 0 ? Float(src[t10 + c]) : 0, p11: Float = t11 >= 0 ? Float(src[t11 + c]) : 0
                            let v0 = p00.addingProduct(ax, p01 - p00)
                            let v1 = p10.addingProduct(ax, p11 - p10)
                            let v = v0.addingProduct(ay, v1 - v0).rounded(.toNearestOrEven)
                            o[c] = v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(v))
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
