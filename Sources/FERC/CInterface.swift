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
    /// The class names as C strings, in class order (empty for embedders), owned here.
    let classNames: [UnsafeMutablePointer<CChar>]
    init(_ classifier: FERClassifier) {
        self.classifier = classifier
        classNames = (classifier.labels ?? []).map { strdup($0)! }
    }
    deinit { classNames.forEach { free($0) } }
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

/// What a `fer_analyzer *` points to: the analyzer and the decoding options of its encoded photos
/// (the pixel limit may change while other threads analyse, hence the lock).
final class CAnalyzer: @unchecked Sendable {
    let analyzer: FaceAnalyzer
    private let lock = NSLock()
    private var options = ImageDecodingOptions.default.forPhotos
    init(_ analyzer: FaceAnalyzer) { self.analyzer = analyzer }

    var decoding: ImageDecodingOptions {
        get { lock.withLock { options } }
        set { lock.withLock { options = newValue } }
    }
}

/// What a `fer_analysis *` points to: per face, C-owned box, landmarks and crop, and a `CResult`.
final class CAnalysis {
    let truncated: Bool
    let scores: [Float]
    let boxes: [UnsafeMutablePointer<Float>]
    let landmarks: [UnsafeMutablePointer<Float>]
    let crops: [UnsafeMutablePointer<UInt8>]
    let results: [CResult]

    init(_ analysis: PhotoAnalysis) {
        func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: values.count)
            p.initialize(from: values, count: values.count)
            return p
        }
        truncated = analysis.truncated
        scores = analysis.faces.map { Float($0.face.score) }
        boxes = analysis.faces.map { copy($0.face.box.map { Float($0) }) }
        landmarks = analysis.faces.map { copy($0.face.landmarks.flatMap { [Float($0.x), Float($0.y)] }) }
        crops = analysis.faces.map { copy($0.alignment.image.pixels) }
        results = analysis.faces.map { CResult($0.classification) }
    }

    deinit {
        for p in boxes { p.deallocate() }
        for p in landmarks { p.deallocate() }
        for p in crops { p.deallocate() }
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

/// Makes a handle (`fer_model *`, `fer_analyzer *`) owning what `load` makes, or NULL with the error
/// named after `source`.
private func makeHandle(_ source: String, _ load: () throws -> AnyObject) -> OpaquePointer? {
    do {
        let object = try load()
        setError("")
        return OpaquePointer(Unmanaged.passRetained(object).toOpaque())
    } catch {
        setError("\(source): \(error)")
        return nil
    }
}

@_cdecl("fer_model_load")
public func fer_model_load(_ path: UnsafePointer<CChar>?) -> OpaquePointer? {
    guard let path else { setError("fer_model_load: path is NULL"); return nil }
    let name = String(cString: path)
    return makeHandle(name) { CModel(try FERClassifier(contentsOf: name, maxBatch: 1)) }
}

@_cdecl("fer_model_open")
public func fer_model_open(_ path: UnsafePointer<CChar>?, _ labels: UnsafePointer<CChar>?, _ threads: Int32) -> OpaquePointer? {
    guard let path else { setError("fer_model_open: path is NULL"); return nil }
    guard (0...256).contains(threads) else { setError("fer_model_open: threads is \(threads), not in 0...256 (0: one)"); return nil }
    let name = String(cString: path)
    let choice = labels.map { String(cString: $0) }
    return makeHandle(name) {
        let model = try FERModel(contentsOf: name)
        let names = try model.architecture.classCount.map { classes throws(LabelChoiceError) in try LabelChoice.names(choice, classes: classes) }
        return CModel(try FERClassifier(model: model, labels: names, maxBatch: 1, threads: max(1, Int(threads))))
    }
}

@_cdecl("fer_model_load_bytes")
public func fer_model_load_bytes(_ bytes: UnsafePointer<UInt8>?, _ length: Int) -> OpaquePointer? {
    guard let bytes, length > 0 else { setError("fer_model_load_bytes: no bytes"); return nil }
    return makeHandle("<memory>") { CModel(try FERClassifier(bytes: Array(UnsafeBufferPointer(start: bytes, count: length)), maxBatch: 1)) }
}

@_cdecl("fer_model_free")
public func fer_model_free(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    Unmanaged<CModel>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

@_cdecl("fer_model_classes")
public func fer_model_classes(_ pointer: OpaquePointer?) -> Int32 {
    fer_model_class_count(pointer)
}

@_cdecl("fer_model_class_count")
public func fer_model_class_count(_ pointer: OpaquePointer?) -> Int32 {
    Int32(model(pointer)?.classNames.count ?? 0)
}

@_cdecl("fer_model_class_name")
public func fer_model_class_name(_ pointer: OpaquePointer?, _ index: Int32) -> UnsafePointer<CChar>? {
    guard let names = model(pointer)?.classNames, index >= 0, Int(index) < names.count else { return nil }
    return UnsafePointer(names[Int(index)])
}

@_cdecl("fer_model_output_width")
public func fer_model_output_width(_ pointer: OpaquePointer?) -> Int32 {
    Int32(model(pointer)?.classifier.model.outputWidth ?? 0)
}

private func analyzer(_ pointer: OpaquePointer?) -> CAnalyzer? {
    pointer.map { Unmanaged<CAnalyzer>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

private func analysis(_ pointer: OpaquePointer?) -> CAnalysis? {
    pointer.map { Unmanaged<CAnalysis>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

/// `height` rows of `width * 3` bytes, `stride` bytes apart, as a packed image; or an error message.
private func packedImage(_ pixels: UnsafePointer<UInt8>, _ width: Int32, _ height: Int32, _ stride: Int32,
                         caller: String) -> Result<RGBImage, CError> {
    guard width > 0, height > 0, Int(width) * Int(height) <= ImageDecodingOptions.pilMaxImagePixels else {
        return .failure(CError("\(caller): image size \(width)x\(height) is empty or over the pixel limit"))
    }
    guard stride >= width * 3 else { return .failure(CError("\(caller): stride \(stride) < width * 3 = \(width * 3)")) }
    let (w, h, s) = (Int(width), Int(height), Int(stride))
    var packed = [UInt8](repeating: 0, count: w * h * 3)
    packed.withUnsafeMutableBufferPointer { out in
        for y in 0..<h { (out.baseAddress! + y * w * 3).update(from: pixels + y * s, count: w * 3) }
    }
    return .success(RGBImage(width: w, height: h, pixels: packed))
}

struct CError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

@_cdecl("fer_classify_rgb")
public func fer_classify_rgb(
    _ pointer: OpaquePointer?, _ pixels: UnsafePointer<UInt8>?, _ width: Int32, _ height: Int32, _ stride: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let m = model(pointer), let pixels, let out else { return fail(invalidArgument, "fer_classify_rgb: NULL argument") }
    out.pointee = nil
    let image: RGBImage
    switch packedImage(pixels, width, height, stride, caller: "fer_classify_rgb") {
    case .success(let packed): image = packed
    case .failure(let error): return fail(invalidArgument, error.message)
    }
    do {
        return publish(try m.classifier.classify(image), out)
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

@_cdecl("fer_analyzer_new")
public func fer_analyzer_new(_ pointer: OpaquePointer?, _ detectorPath: UnsafePointer<CChar>?, _ detectSize: Int32,
                             _ threshold: Float, _ maxFaces: Int32) -> OpaquePointer? {
    guard let m = model(pointer) else { setError("fer_analyzer_new: model is NULL"); return nil }
    let defaults = FaceDetectionOptions()
    let options = FaceDetectionOptions(detectSize: detectSize == 0 ? defaults.detectSize : Int(detectSize),
                                       threshold: threshold == 0 ? defaults.threshold : Double(threshold),
                                       maxFaces: maxFaces == 0 ? defaults.maxFaces : Int(maxFaces))
    let path: String
    do {
        try options.validate()
        path = try DefaultModel.resolveDetector(detectorPath.map { String(cString: $0) })
    } catch {
        setError("fer_analyzer_new: \(error)")
        return nil
    }
    return makeHandle(path) {
        CAnalyzer(try FaceAnalyzer(detector: try FERModel(contentsOf: path), classifier: m.classifier.sharingModel(maxBatch: 8),
                                    options: options))
    }
}

@_cdecl("fer_analyzer_free")
public func fer_analyzer_free(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    Unmanaged<CAnalyzer>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

@_cdecl("fer_analyzer_set_max_pixels")
public func fer_analyzer_set_max_pixels(_ pointer: OpaquePointer?, _ maxPixels: Int64) -> Int32 {
    guard let a = analyzer(pointer) else { return fail(invalidArgument, "fer_analyzer_set_max_pixels: analyzer is NULL") }
    guard maxPixels >= 0 else {
        return fail(invalidArgument, "fer_analyzer_set_max_pixels: \(maxPixels) is negative (0 means no limit)")
    }
    a.decoding.maxPixels = maxPixels == 0 ? nil : Int(maxPixels)
    setError("")
    return okStatus
}

private func publish(_ analysis: PhotoAnalysis, _ out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
    out.pointee = OpaquePointer(Unmanaged.passRetained(CAnalysis(analysis)).toOpaque())
    setError("")
    return okStatus
}

@_cdecl("fer_analyze_rgb")
public func fer_analyze_rgb(
    _ pointer: OpaquePointer?, _ pixels: UnsafePointer<UInt8>?, _ width: Int32, _ height: Int32, _ stride: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let a = analyzer(pointer), let pixels, let out else { return fail(invalidArgument, "fer_analyze_rgb: NULL argument") }
    out.pointee = nil
    switch packedImage(pixels, width, height, stride, caller: "fer_analyze_rgb") {
    case .failure(let error): return fail(invalidArgument, error.message)
    case .success(let image):
        do { return publish(try a.analyzer.analyze(image), out) } catch { return fail(inferenceError, "\(error)") }
    }
}

@_cdecl("fer_analyze_encoded")
public func fer_analyze_encoded(
    _ pointer: OpaquePointer?, _ bytes: UnsafePointer<UInt8>?, _ length: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let a = analyzer(pointer), let bytes, let out else { return fail(invalidArgument, "fer_analyze_encoded: NULL argument") }
    out.pointee = nil
    guard length > 0 else { return fail(invalidArgument, "fer_analyze_encoded: length is 0 (no image bytes)") }
    let image: RGBImage
    do { image = try ImageDecoder.decode(bytes: Array(UnsafeBufferPointer(start: bytes, count: length)), options: a.decoding).image } catch {
        return fail(imageError, error.description)
    }
    do { return publish(try a.analyzer.analyze(image), out) } catch { return fail(inferenceError, "\(error)") }
}

@_cdecl("fer_analysis_face_count")
public func fer_analysis_face_count(_ pointer: OpaquePointer?) -> Int32 { Int32(analysis(pointer)?.results.count ?? 0) }

@_cdecl("fer_analysis_truncated")
public func fer_analysis_truncated(_ pointer: OpaquePointer?) -> Int32 { analysis(pointer)?.truncated == true ? 1 : 0 }

/// Face `face` of the analysis at `pointer`, or nil when either is out of range.
private func face(_ pointer: OpaquePointer?, _ face: Int32) -> (CAnalysis, Int)? {
    guard let a = analysis(pointer), face >= 0, Int(face) < a.results.count else { return nil }
    return (a, Int(face))
}

@_cdecl("fer_analysis_face_box")
public func fer_analysis_face_box(_ pointer: OpaquePointer?, _ i: Int32) -> UnsafePointer<Float>? {
    face(pointer, i).map { UnsafePointer($0.0.boxes[$0.1]) }
}

@_cdecl("fer_analysis_face_landmarks")
public func fer_analysis_face_landmarks(_ pointer: OpaquePointer?, _ i: Int32) -> UnsafePointer<Float>? {
    face(pointer, i).map { UnsafePointer($0.0.landmarks[$0.1]) }
}

@_cdecl("fer_analysis_face_score")
public func fer_analysis_face_score(_ pointer: OpaquePointer?, _ i: Int32) -> Float { face(pointer, i).map { $0.0.scores[$0.1] } ?? 0 }

@_cdecl("fer_analysis_face_crop")
public func fer_analysis_face_crop(_ pointer: OpaquePointer?, _ i: Int32) -> UnsafePointer<UInt8>? {
    face(pointer, i).map { UnsafePointer($0.0.crops[$0.1]) }
}

@_cdecl("fer_analysis_face_result")
public func fer_analysis_face_result(_ pointer: OpaquePointer?, _ i: Int32) -> OpaquePointer? {
    face(pointer, i).map { OpaquePointer(Unmanaged.passUnretained($0.0.results[$0.1]).toOpaque()) }
}

@_cdecl("fer_analysis_free")
public func fer_analysis_free(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    Unmanaged<CAnalysis>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

@_cdecl("fer_last_error")
public func fer_last_error() -> UnsafePointer<CChar> { UnsafePointer(errorSlot().message) }
