import FERImage
import XCTest

import FERFaces

final class AlignmentTests: XCTestCase {
    /// scikit-image SimilarityTransform estimates, the chosen template and its error.
    func testSimilarityMatchesScikitImage() throws {
        for c in try FaceFixtures.list("similarity") {
            let flat = try XCTUnwrap(c["landmarks"] as? [[NSNumber]]).map { $0.map(\.doubleValue) }
            let landmarks = flat.map { FacePoint(x: $0[0], y: $0[1]) }
            let matrices = try XCTUnwrap(c["matrices"] as? [[NSNumber]])
            for (t, template) in FaceAlignment.templates.enumerated() {
                let m = try FaceAlignment.similarity(from: landmarks, to: template)
                for (got, want) in zip(m.entries, matrices[t].map(\.doubleValue)) {
                    XCTAssertEqual(got, want, accuracy: 1e-5, "landmarks \(flat), template \(t)")
                }
            }
            let best = try FaceAlignment.bestTemplate(for: landmarks)
            XCTAssertEqual(best.template, c["best"] as? Int)
            XCTAssertEqual(best.error, (c["error"] as! NSNumber).doubleValue, accuracy: 1e-6)
        }
    }

    /// align() = best template + warp of the original: the astronaut crops of the fixtures, whose
    /// landmarks the fixture script gives as floats (the first set) and integers (the second).
    func testAlignAstronaut() throws {
        let image: RGBImage
        do { image = try FaceFixtures.image("shared:data/images/astronaut.png") } catch is XCTSkip { throw XCTSkip("no astronaut") }
        let sims = try FaceFixtures.list("similarity")
        let warps = try FaceFixtures.list("warp").filter { ($0["input"] as! String).hasPrefix("shared:") }
        for (k, truncating) in [(0, false), (1, true), (0, true)] {
            let flat = try XCTUnwrap(sims[k]["landmarks"] as? [[NSNumber]]).map { $0.map(\.doubleValue) }
            let aligned = try FaceAlignment.align(image, landmarks: flat.map { FacePoint(x: $0[0], y: $0[1]) },
                                                  truncatingLandmarks: truncating)
            XCTAssertEqual(aligned.template, sims[k]["best"] as? Int)
            // Set 1 is set 0 truncated, so truncating set 0 gives crop 1.
            let expected = try FaceFixtures.image(warps[truncating ? 1 : 0]["output"] as! String)
            XCTAssertEqual(compare(aligned.image, expected).maxDiff, 0, "set \(k), truncating \(truncating)")
        }
    }

    func testDegenerateLandmarks() {
        let same = [FacePoint](repeating: FacePoint(x: 3, y: 4), count: 5)
        XCTAssertThrowsError(try FaceAlignment.bestTemplate(for: same)) {
            guard case FaceError.degenerateLandmarks = $0 else { return XCTFail("\($0)") }
        }
        var nan = FaceAlignment.templates[2]
        nan[3].y = .nan
        XCTAssertThrowsError(try FaceAlignment.bestTemplate(for: nan)) {
            guard case FaceError.nonFinite = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try FaceAlignment.bestTemplate(for: Array(nan.prefix(4))))
        // Target points all equal: scale 0.
        XCTAssertThrowsError(try FaceAlignment.similarity(from: FaceAlignment.templates[0], to: same)) {
            guard case FaceError.degenerateLandmarks = $0 else { return XCTFail("\($0)") }
        }
        let image = RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 9, count: 12))
        XCTAssertThrowsError(try FaceAlignment.align(image, landmarks: same))
        // A template aligns to itself, with the identity.
        let m = try? FaceAlignment.bestTemplate(for: FaceAlignment.templates[3])
        XCTAssertEqual(m?.template, 3)
        XCTAssertEqual(m?.matrix.m00 ?? 0, 1, accuracy: 1e-12)
        XCTAssertEqual(m?.matrix.m02 ?? 1, 0, accuracy: 1e-12)
    }
}

final class DecodeTests: XCTestCase {
    /// Random head outputs through the fixture script's float64 numpy decode + NMS: identical face lists.
    func testDecodeMatchesReference() throws {
        for c in try FaceFixtures.list("decode") {
            let h = c["height"] as! Int, w = c["width"] as! Int
            XCTAssertEqual(RetinaFaceDecoder.anchorCount(height: h, width: w), c["anchors"] as! Int)
            XCTAssertEqual(try RetinaFaceDecoder.priors(height: h, width: w).count, c["anchors"] as! Int)
            let faces = try RetinaFaceDecoder.decode(
                boxes: try FaceFixtures.doubles(c["boxes"]).map { Float($0) },
                scores: try FaceFixtures.doubles(c["scores"]).map { Float($0) },
                landmarks: try FaceFixtures.doubles(c["landmarks"]).map { Float($0) },
                height: h, width: w, scaleX: (c["scaleX"] as! NSNumber).doubleValue,
                scaleY: (c["scaleY"] as! NSNumber).doubleValue)
            let expected = try XCTUnwrap(c["faces"] as? [[String: Any]])
            XCTAssertGreaterThan(expected.count, 10)
            XCTAssertLessThan(expected.count, c["aboveThreshold"] as! Int, "NMS removed some")
            XCTAssertEqual(faces.count, expected.count)
            for (f, e) in zip(faces, expected) {
                XCTAssertEqual(f.score, (e["score"] as! NSNumber).doubleValue, accuracy: 1e-12)
                for (a, b) in zip(f.box, try FaceFixtures.doubles(e["box"])) { XCTAssertEqual(a, b, accuracy: 1e-3) }
                let lm = try FaceFixtures.doubles(e["landmarks"])
                for (k, p) in f.landmarks.enumerated() {
                    XCTAssertEqual(p.x, lm[2 * k], accuracy: 1e-3)
                    XCTAssertEqual(p.y, lm[2 * k + 1], accuracy: 1e-3)
                }
            }
        }
    }

    func testPriorsOrder() throws {
        let p = try RetinaFaceDecoder.priors(height: 20, width: 36)
        // Level 1: 3 rows x 5 cols x 2 sizes, then level 2: 2 x 3 x 2, level 3: 1 x 2 x 2.
        XCTAssertEqual(p.count, 30 + 12 + 4)
        XCTAssertEqual(p[0], Prior(cx: 4.0 / 36, cy: 4.0 / 20, w: 16.0 / 36, h: 16.0 / 20))
        XCTAssertEqual(p[1], Prior(cx: 4.0 / 36, cy: 4.0 / 20, w: 32.0 / 36, h: 32.0 / 20))
        XCTAssertEqual(p[2].cx, 12.0 / 36)
        XCTAssertEqual(p[10].cy, 12.0 / 20)
        XCTAssertEqual(p[30], Prior(cx: 8.0 / 36, cy: 8.0 / 20, w: 64.0 / 36, h: 64.0 / 20))
        XCTAssertEqual(p[45], Prior(cx: 48.0 / 36, cy: 16.0 / 20, w: 512.0 / 36, h: 512.0 / 20))
    }

    func testNMSUsesPlusOneAreas() {
        func face(_ x1: Double, _ s: Double) -> Face {
            Face(box: [x1, 0, x1 + 9, 9], score: s, landmarks: [])
        }
        // Boxes 0...9 wide and high. Shift 4.7: with the +1, IoU = 53 / 147 = 0.36 > 0.35 (dropped);
        // without it 38.7 / 123.3 = 0.31 (kept). Shift 5.2 from the first: 48 / 152 = 0.32 (kept), but it
        // would fall to the 4.7 box (IoU 0.89) had that one stayed. Output best first.
        let kept = RetinaFaceDecoder.nms([face(5.2, 0.7), face(0, 0.9), face(4.7, 0.8), face(40, 0.95)], iou: 0.35)
        XCTAssertEqual(kept.map(\.score), [0.95, 0.9, 0.7])
    }

    /// The authors' NMS keeps a box whose IoU is exactly the threshold (`ovr <= thresh`) and drops it
    /// one ulp above. A 7x20 box inside a 20x20 one (+1 areas): 140 / 400 = 0.35, the same double as
    /// the literal, since division rounds correctly.
    func testNMSKeepsABoxAtExactlyTheThreshold() {
        let outer = Face(box: [0, 0, 19, 19], score: 0.9, landmarks: [])
        let inner = Face(box: [0, 0, 6, 19], score: 0.8, landmarks: [])
        XCTAssertEqual(RetinaFaceDecoder.nms([outer, inner], iou: 0.35).map(\.score), [0.9, 0.8])
        XCTAssertEqual(RetinaFaceDecoder.nms([outer, inner], iou: 0.35.nextDown).map(\.score), [0.9])
    }

    func testBadOutputs() {
        XCTAssertThrowsError(try RetinaFaceDecoder.decode(boxes: [], scores: [], landmarks: [], height: 8, width: 8)) {
            guard case FaceError.shapeMismatch(name: "boxes", expected: 24, actual: 0) = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try RetinaFaceDecoder.priors(height: 0, width: 8))
        let a = RetinaFaceDecoder.anchorCount(height: 8, width: 8)
        var scores = [Float](repeating: 0, count: 2 * a)
        scores[1] = 0.9
        scores[3] = .nan  // NaN scores are never above the threshold
        var boxes = [Float](repeating: 0, count: 4 * a)
        let landmarks = [Float](repeating: 0, count: 10 * a)
        XCTAssertEqual(try RetinaFaceDecoder.decode(boxes: boxes, scores: scores, landmarks: landmarks, height: 8, width: 8).count, 1)
        boxes[2] = 1e4  // exp overflows
        XCTAssertThrowsError(try RetinaFaceDecoder.decode(boxes: boxes, scores: scores, landmarks: landmarks, height: 8, width: 8)) {
            guard case FaceError.nonFinite = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try RetinaFaceDecoder.decode(boxes: boxes, scores: scores, landmarks: landmarks, height: 8, width: 8, scaleX: 0))
    }
}
