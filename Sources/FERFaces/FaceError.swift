/// Errors of the face geometry functions: every bad input is one of these, never a crash.
public enum FaceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A size or count argument is outside what the function accepts.
    case invalidArgument(String)
    /// A head output's length does not match the priors of the input size.
    case shapeMismatch(name: String, expected: Int, actual: Int)
    /// A value that must be finite is NaN or infinite.
    case nonFinite(String)
    /// The landmarks do not determine a similarity transform (all points coincide, or fewer than two).
    case degenerateLandmarks(String)

    public var description: String {
        switch self {
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .shapeMismatch(let name, let expected, let actual):
            return "\(name) has \(actual) values, expected \(expected)"
        case .nonFinite(let what): return "non-finite value in \(what)"
        case .degenerateLandmarks(let what): return "degenerate landmarks: \(what)"
        }
    }
}
