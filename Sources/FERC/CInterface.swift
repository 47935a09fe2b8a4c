import FERRuntime
import Foundation

// The C ABI declared in include/fer.h. Every entry point validates its arguments before any
// Swift API sees them (so no precondition can trap), catches every error, and reports it as a
// status code plus a per-thread message.

/// What a `fer_model *` points to. Every C call classifies one image, so the classifier's sessions
/// hold one image's buffers (`maxBatch: 1`), and at most ``FERClassifier/maxIdleSessions`` of them
/// stay allocated between calls however many threads called at once.
final class CModel {
    let classifier: FERClassifier
    init(_ classifier: FERClassifier) { self.classifier = classifier }
}

/// What a `fer_result *` points to: the classification with C-owned copies of its strings and arrays.
final class CResult {
    let label: UnsafeMutablePointer<CChar>?
    let index: Int32
    let probability: Float
    let width: Int32
    let probabilities: UnsafeMutablePointer<Float>?
    let logits: UnsafeMutablePointer<Float>?
    let embedding: UnsafeMutablePointer<Float>?

    init(_ c: Classification) {
        label = c.label.map { strdup($0) }
        index = Int32(c.index ?? -1)
        probability = c.probability ?? 0
        func copy(_ values: [Float]) -> UnsafeMutablePointer<Float>? {
            guard !values.isEmpty else { return nil }
            let p = UnsafeMutablePointer<Float>.allocate(capacity: values.count)
            p.initialize(from: values, count: values.count)
            return p
        }
        width = Int32(c.embedding?.count ?? c.logits.count)
        probabilities = copy(c.probabilities)
        logits = copy(c.logits)
        embedding = copy(c.embedding ?? [])
    }

    deinit {
        free(label)
        probabilities?.deallocate()
        logits?.deallocate()
        embedding?.deallocate()
    }
}

/// Per-thread last error, as a C string owned by the thread's slot.
private final class ErrorSlot {
    var message: UnsafeMutablePointer<CChar> = strdup("")
    deinit { free(message) }
}

private let errorKey = "fer.last_error"

private func errorSlot() -> ErrorSlot {
    if let slot = Thread.current.threadDictionary[errorKey] as? ErrorSlot { return slot }
    let slot = ErrorSlot()
    Thread.current.threadDictionary[errorKey] = slot
    return slot
}

private func setError(_ message: String) {
    let slot = errorSlot()
    free(slot.message)
    slot.message = strdup(message)
}

private func fail(_ status: Int32, _ message: String) -> Int32 {
    setError(message)
    return status
}

private let okStatus: Int32 = 0, invalidArgument: Int32 = 1, modelError: Int32 = 2, imageError: Int32 = 3, inferenceError: Int32 = 4

private func model(_ pointer: OpaquePointer?) -> CModel? {
    pointer.map { Unmanaged<CModel>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

private func result(_ pointer: OpaquePointer?) -> CResult? {
    pointer.map { Unmanaged<CResult>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

private func publish(_ c: Classification, _ out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
    out.pointee = OpaquePointer(Unmanaged.passRetained(CResult(c)).toOpaque())
    setError("")
    return okStatus
}

/// Makes a `fer_model *` from a classifier, or NULL with the error named after `source`.
private func makeModel(_ source: String, _ load: () throws -> FERClassifier) -> OpaquePointer? {
    do {
        let classifier = try load()
        setError("")
        return OpaquePointer(Unmanaged.passRetained(CModel(classifier)).toOpaque())
    } catch {
        setError("\(source): \(error)")
        return nil
    }
}

@_cdecl("fer_model_load")
public func fer_model_load(_ path: UnsafePointer<CChar>?) -> OpaquePointer? {
    guard let path else { setError("fer_model_load: path is NULL"); return nil }
    let name = String(cString: path)
    return makeModel(name) { try FERClassifier(contentsOf: name, maxBatch: 1) }
}

@_cdecl("fer_model_load_bytes")
public func fer_model_load_bytes(_ bytes: UnsafePointer<UInt8>?, _ length: Int) -> OpaquePointer? {
    guard let bytes, length > 0 else { setError("fer_model_load_bytes: no bytes"); return nil }
    return makeModel("<memory>") { try FERClassifier(bytes: Array(UnsafeBufferPointer(start: bytes, count: length)), maxBatch: 1) }
}

@_cdecl("fer_model_free")
public func fer_model_free(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    Unmanaged<CModel>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

@_cdecl("fer_model_classes")
public func fer_model_classes(_ pointer: OpaquePointer?) -> Int32 {
    Int32(model(pointer)?.classifier.model.architecture.classCount ?? 0)
}

@_cdecl("fer_model_output_width")
public func fer_model_output_width(_ pointer: OpaquePointer?) -> Int32 {
    Int32(model(pointer)?.classifier.model.outputWidth ?? 0)
}

@_cdecl("fer_classify_rgb")
public func fer_classify_rgb(
    _ pointer: OpaquePointer?, _ pixels: UnsafePointer<UInt8>?, _ width: Int32, _ height: Int32, _ stride: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let m = model(pointer), let pixels, let out else { return fail(invalidArgument, "fer_classify_rgb: NULL argument") }
    out.pointee = nil
    guard width > 0, height > 0, Int(width) * Int(height) <= ImageDecodingOptions.pilMaxImagePixels else {
        return fail(invalidArgument, "fer_classify_rgb: image size \(width)x\(height) is empty or over the pixel limit")
    }
    guard stride >= width * 3 else { return fail(invalidArgument, "fer_classify_rgb: stride \(stride) < width * 3 = \(width * 3)") }
    let (w, h, s) = (Int(width), Int(height), Int(stride))
    var packed = [UInt8](repeating: 0, count: w * h * 3)
    for y in 0..<h { for x in 0..<(w * 3) { packed[y * w * 3 + x] = pixels[y * s + x] } }
    do {
        return publish(try m.classifier.classify(RGBImage(width: w, height: h, pixels: packed)), out)
    } catch {
        return fail(inferenceError, "\(error)")
    }
}

@_cdecl("fer_classify_encoded")
public func fer_classify_encoded(
    _ pointer: OpaquePointer?, _ bytes: UnsafePointer<UInt8>?, _ length: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let m = model(pointer), let bytes, let out else { return fail(invalidArgument, "fer_classify_encoded: NULL argument") }
    out.pointee = nil
    guard length > 0 else { return fail(invalidArgument, "fer_classify_encoded: length is 0 (no image bytes)") }
    do {
        return publish(try m.classifier.classify(encoded: Array(UnsafeBufferPointer(start: bytes, count: length))), out)
    } catch let error as ImageError {
        return fail(imageError, error.description)
    } catch {
        return fail(inferenceError, "\(error)")
    }
}

@_cdecl("fer_result_label")
public func fer_result_label(_ pointer: OpaquePointer?) -> UnsafePointer<CChar>? { result(pointer)?.label.map { UnsafePointer($0) } }

@_cdecl("fer_result_index")
public func fer_result_index(_ pointer: OpaquePointer?) -> Int32 { result(pointer)?.index ?? -1 }

@_cdecl("fer_result_probability")
public func fer_result_probability(_ pointer: OpaquePointer?) -> Float { result(pointer)?.probability ?? 0 }

@_cdecl("fer_result_width")
public func fer_result_width(_ pointer: OpaquePointer?) -> Int32 { result(pointer)?.width ?? 0 }

@_cdecl("fer_result_probabilities")
public func fer_result_probabilities(_ pointer: OpaquePointer?) -> UnsafePointer<Float>? { result(pointer)?.probabilities.map { UnsafePointer($0) } }

@_cdecl("fer_result_logits")
public func fer_result_logits(_ pointer: OpaquePointer?) -> UnsafePointer<Float>? { result(pointer)?.logits.map { UnsafePointer($0) } }

@_cdecl("fer_result_embedding")
public func fer_result_embedding(_ pointer: OpaquePointer?) -> UnsafePointer<Float>? { result(pointer)?.embedding.map { UnsafePointer($0) } }

@_cdecl("fer_result_free")
public func fer_result_free(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    Unmanaged<CResult>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

@_cdecl("fer_last_error")
public func fer_last_error() -> UnsafePointer<CChar> { UnsafePointer(errorSlot().message) }
