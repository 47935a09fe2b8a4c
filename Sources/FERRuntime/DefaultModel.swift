import Foundation

/// Where the tools look for a model when none is given.
public enum DefaultModel {
    /// The seeded LFNSB-7 checkpoint shipped in the repository.
    public static let relativePath = "weights/lfnsb7-seeded.pth"

    /// The RetinaFace MobileNet-0.25 detector shipped in the repository.
    public static let detectorRelativePath = "weights/retinaface-mobilenet0.25.pth"

    /// `explicit` when given; else `$FER_MODEL`; else ``relativePath`` in the working directory or
    /// beside the package the running executable was built in (up to five folders up).
    public static func resolve(_ explicit: String?) throws -> String {
        try find(explicit, environment: "FER_MODEL", relativePath: relativePath, missing: .noModel)
    }

    /// The detector: `explicit` when given; else `$FER_DETECTOR`; else ``detectorRelativePath``, looked
    /// for as ``resolve(_:)`` looks for the classifier.
    public static func resolveDetector(_ explicit: String?) throws -> String {
        try find(explicit, environment: "FER_DETECTOR", relativePath: detectorRelativePath, missing: .noDetector)
    }

    private static func find(_ explicit: String?, environment: String, relativePath: String,
                             missing: ClassifierError) throws -> String {
        if let explicit { return explicit }
        if let env = ProcessInfo.processInfo.environment[environment], !env.isEmpty { return env }
        var candidates = [FileManager.default.currentDirectoryPath + "/" + relativePath]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent(relativePath).path)
            dir = dir.deletingLastPathComponent()
        }
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw missing
    }
}
