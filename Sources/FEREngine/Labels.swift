/// Expression label orders of the datasets LFNSB is trained on.
public enum LabelSet: String, CaseIterable, Sendable {
    /// RAF-DB, 7 classes.
    case rafdb
    /// AffectNet with 7 classes (AffectNet-8 without Contempt).
    case affectnet7
    /// AffectNet with 8 classes.
    case affectnet8

    /// Names in class-index order.
    public var names: [String] {
        switch self {
        case .rafdb: return ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
        case .affectnet7: return ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"]
        case .affectnet8: return ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]
        }
    }

    /// Default names for a class count: the label set ``defaultFor(classes:)`` picks, else `class N`.
    public static func names(forClasses classes: Int) -> [String] {
        defaultFor(classes: classes)?.names ?? (0..<classes).map { "class \($0)" }
    }

    /// The default for a class count: RAF-DB for 7, AffectNet-8 for 8, none otherwise.
    public static func defaultFor(classes: Int) -> LabelSet? {
        switch classes {
        case 7: return .rafdb
        case 8: return .affectnet8
        default: return nil
        }
    }
}
