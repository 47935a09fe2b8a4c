import FERTensor
import Foundation
import XCTest

/// The committed PyTorch fixtures (see Tests/Fixtures/LAYOUT.md).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = root.appendingPathComponent("Tests/Fixtures")
    static let inputs = ["random-b1", "random-b2", "random-b7", "images-b2"]

    struct CheckpointCase {
        let path: String
        let form: String
        /// The expected-output case, nil for partial state_dicts that only the importer reads.
        let expected: String?
        let model: String
    }

    /// The default weights (authors' training format), then every checkpoint with a
    /// `model.meta.json` beside it.
    static func checkpoints() throws -> [CheckpointCase] {
        var cases = [CheckpointCase(path: root.appendingPathComponent("weights/lfnsb7-seeded.pth").path,
                                    form: "lfnsb7-authors", expected: "lfnsb7", model: "lfnsb")]
        for group in ["checkpoints", "models"] {
            let dir = directory.appendingPathComponent(group)
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() {
                let meta = dir.appendingPathComponent(name).appendingPathComponent("model.meta.json")
                let json = try JSONSerialization.jsonObject(with: Data(contentsOf: meta)) as! [String: Any]
                cases.append(CheckpointCase(
                    path: dir.appendingPathComponent(name).appendingPathComponent("model.pth").path, form: name,
                    expected: json["expected"] as? String, model: json["model"] as! String))
            }
        }
        return cases
    }

    static func input(_ name: String) throws -> Tensor {
        try NPY.read(path: directory.appendingPathComponent("inputs/\(name).npy").path)
    }

    static func expected(_ caseName: String, _ input: String, _ output: String) throws -> Tensor {
        try NPY.read(path: directory.appendingPathComponent("expected/\(caseName)/\(input).\(output).npy").path)
    }

    static func stage(_ caseName: String, _ stage: String) -> Tensor? {
        try? NPY.read(path: directory.appendingPathComponent("expected/\(caseName)/stages/random-b1/\(stage).npy").path)
    }
}

/// Checks `actual` against PyTorch's `expected` with the engine's tolerances: for logits,
/// max |difference| <= 1e-4 x max |expected| and the same argmax per row; for embeddings,
/// cosine similarity >= 0.99999 per row.
func assertMatchesPyTorch(
    _ actual: Tensor, _ expected: Tensor, embedding: Bool, _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.shape, expected.shape, label, file: file, line: line)
    guard actual.shape == expected.shape, let width = expected.shape.last, width > 0 else { return }
    let rows = expected.count / width
    if embedding {
        for r in 0..<rows {
            var (dot, na, nb) = (0.0, 0.0, 0.0)
            for c in 0..<width {
                let (a, b) = (Double(actual.data[r * width + c]), Double(expected.data[r * width + c]))
                dot += a * b; na += a * a; nb += b * b
            }
            let cosine = dot / (na.squareRoot() * nb.squareRoot())
            XCTAssertGreaterThanOrEqual(cosine, 0.99999, "\(label) row \(r)", file: file, line: line)
        }
    } else {
        let scale = expected.data.map { abs($0) }.max() ?? 0
        let worst = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(label): max |diff| \(worst), max |logit| \(scale)", file: file, line: line)
        for r in 0..<rows {
            let a = actual.data[r * width..<(r + 1) * width], e = expected.data[r * width..<(r + 1) * width]
            XCTAssertEqual(a.firstIndex(of: a.max()!)! - r * width, e.firstIndex(of: e.max()!)! - r * width,
                           "\(label) argmax row \(r)", file: file, line: line)
        }
    }
}

/// Largest |a - b| relative to the largest |b|.
func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
    let scale = max(b.data.map { abs($0) }.max() ?? 0, 1e-12)
    return (zip(a.data, b.data).map { abs($0 - $1) }.max() ?? 0) / scale
}
