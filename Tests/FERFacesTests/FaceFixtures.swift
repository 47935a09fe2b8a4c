import FERImage
import Foundation
import XCTest

/// Tests/Fixtures/faces (made by tools/reference/make_face_fixtures.py) and how to read it.
enum FaceFixtures {
    static let repoRoot: String = {
        let here = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }()
    static let root = repoRoot + "/Tests/Fixtures/faces"

    nonisolated(unsafe) static let manifest: [String: Any] = {
        guard let data = FileManager.default.contents(atPath: root + "/faces.json"),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }()

    static func list(_ key: String) throws -> [[String: Any]] {
        let value = try XCTUnwrap(manifest[key] as? [[String: Any]], "faces.json has no \(key)")
        XCTAssertFalse(value.isEmpty, "faces.json: \(key) is empty")
        return value
    }

    /// An input or output image; "shared:..." inputs come from ../shared and throw XCTSkip when absent.
    static func image(_ name: String) throws -> RGBImage {
        let path: String
        if name.hasPrefix("shared:") {
            path = repoRoot + "/../shared/" + name.dropFirst("shared:".count)
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is absent") }
        } else {
            path = root + "/" + name
        }
        return try ImageDecoder.decode(path: path).image
    }

    static func doubles(_ value: Any?) throws -> [Double] {
        try XCTUnwrap(value as? [NSNumber]).map(\.doubleValue)
    }
}

/// Largest absolute difference and the share of equal samples.
func compare(_ a: RGBImage, _ b: RGBImage) -> (maxDiff: Int, exact: Double) {
    precondition(a.width == b.width && a.height == b.height)
    var worst = 0, same = 0
    for (x, y) in zip(a.pixels, b.pixels) {
        let d = abs(Int(x) - Int(y))
        worst = max(worst, d)
        if d == 0 { same += 1 }
    }
    return (worst, Double(same) / Double(a.pixels.count))
}
