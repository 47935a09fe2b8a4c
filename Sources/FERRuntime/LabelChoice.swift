import FEREngine
import FERImage
import Foundation

/// The label names a user picks for a classifier, as `fer-infer --labels`, `fer-infer eval --labels`
/// and the C ABI's `fer_model_open` take them: the name of a ``LabelSet`` (`rafdb`, `affectnet7`,
/// `affectnet8`, any case), or a UTF-8 text file of names, one per line (blank lines skipped,
/// spaces around a name trimmed). Nil picks the default for the class count
/// (``LabelSet/names(forClasses:)``).
public enum LabelChoice {
    /// Largest names file read: far more than any label set needs.
    public static let maxFileBytes = 1 << 16

    /// The names `choice` gives for `classes` classes; throws when it is neither a label set nor a
    /// readable names file, or when its count is not `classes`.
    public static func names(_ choice: String?, classes: Int) throws(LabelChoiceError) -> [String] {
        guard let choice else { return LabelSet.names(forClasses: classes) }
        let names: [String]
        if let set = LabelSet(rawValue: choice.lowercased()) {
            names = set.names
        } else if FileManager.default.fileExists(atPath: choice) {
            let bytes: [UInt8]
            do { bytes = try ImageDecoder.readFile(pathBytes: Array(choice.utf8), maxBytes: maxFileBytes) } catch {
                throw LabelChoiceError(description: "\(choice): \(error.message)")
            }
            guard let text = String(validating: bytes, as: UTF8.self), !text.contains("\0") else {
                throw LabelChoiceError(description: "\(choice): cannot be read as UTF-8 text")
            }
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else {
            throw LabelChoiceError(description: "'\(choice)' is neither a label set (\(LabelSet.allCases.map(\.rawValue).joined(separator: ", "))) nor a file of names")
        }
        guard names.count == classes else {
            throw LabelChoiceError(description: "\(choice) has \(names.count) names but the model has \(classes) classes")
        }
        return names
    }
}

/// Why a label choice was refused, in words naming the choice.
public struct LabelChoiceError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
}
