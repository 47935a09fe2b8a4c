import Dispatch
import FERRuntime
import Hummingbird
import NIOCore

/// `POST /v1/classify` and `POST /v1/analyze`: reading a request's images, then running them on a
/// worker, each image apart (see ``FERService`` for what a multipart answer holds).
extension FERService {
    /// The images of a request: the body itself, or every file part of a multipart body; and whether
    /// it was multipart. The body is read under `--max-body` and the in-flight budget (`reservation`).
    func images(of request: Request, reservation: BodyReservation) async throws -> (inputs: [Multipart.FilePart], isMultipart: Bool) {
        let rawType = request.headers[.contentType] ?? ""
        let contentType = try HeaderValue(parsing: rawType)
        let limits = BodyLimits(maxBytes: settings.maxBodyBytes, reservation: reservation)
        let contentLength = request.headers[.contentLength].flatMap { Int($0) }
        let isMultipart = contentType.value == "multipart/form-data"
        if isMultipart {
            let boundary = try Multipart.boundary(of: contentType)  // before reading any of the body
            try limits.admit(contentLength: contentLength)
            let contents = try await Multipart.read(request.body, boundary: boundary, maxParts: settings.maxParts, limits: limits)
            guard !contents.files.isEmpty else {
                let ignored = contents.ignoredFields.isEmpty ? "" : " (fields ignored: \(contents.ignoredFields.joined(separator: ", ")))"
                throw ServiceError(.multipart("multipart body holds no file part\(ignored): send each image as a file, e.g. curl -F image=@face.png"))
            }
            return (contents.files, true)
        }
        // `curl --data-binary @face.png` labels the file a form: such a body is taken when it is an image.
        let form = contentType.value == "application/x-www-form-urlencoded"
        guard form || ["", "image/png", "image/jpeg", "application/octet-stream"].contains(contentType.value) else {
            throw ServiceError(.unsupportedMediaType(rawType))
        }
        try limits.admit(contentLength: contentLength)
        let body = try await BodyReader.collect(request.body, contentLength: contentLength, limits: limits)
        guard !body.isEmpty else { throw ServiceError(.emptyBody) }
        if form, ImageDecoder.detectFormat(body) == nil { throw ServiceError(.unsupportedMediaType(rawType)) }
        return ([.init(name: "body", bytes: body)], false)
    }

    func classify(_ request: Request, context: FERRequestContext) async throws -> Response {
        let reservation = bodyBudget.reservation()
        defer { reservation.release() }
        let (inputs, isMultipart) = try await images(of: request, reservation: reservation)
        let classifier = self.classifier
        let options = ImageDecodingOptions(maxPixels: settings.maxPixels, maxFileBytes: settings.maxBodyBytes)
        let hook = beforeEachImage
        let results = try await pool.run(waitLimit: settings.requestTimeout, deadline: settings.deadline) { job in
            try inputs.map { input in
                try Self.eachPart(input) { try Self.classifyOne(input, classifier: classifier, options: options, job: job, hook: hook) }
            }
        }
        let records = try Self.records(results, isMultipart: isMultipart, context: context, metrics: metrics) { result in
            var record = result.classification.jsonFields(labels: classifier.labels)
            record["timing_ms"] = ["decode": result.decodeMs, "inference": result.inferenceMs, "total": result.decodeMs + result.inferenceMs]
            return record
        }
        return json(.ok, isMultipart ? ["results": records] as [String: Any] : records[0])
    }

    func analyze(_ request: Request, context: FERRequestContext) async throws -> Response {
        guard let analyzer else { throw ServiceError(.noAnalyzer) }
        let reservation = bodyBudget.reservation()
        defer { reservation.release() }
        let (inputs, isMultipart) = try await images(of: request, reservation: reservation)
        // Photos go to the detector as OpenCV reads them, as in fer-infer and FaceAnalyzer.analyze(encoded:).
        let options = ImageDecodingOptions(maxPixels: settings.maxPixels, maxFileBytes: settings.maxBodyBytes).forPhotos
        let hook = beforeEachImage
        let results = try await pool.run(waitLimit: settings.requestTimeout, deadline: settings.deadline) { job in
            try inputs.map { input in
                try Self.eachPart(input) { () throws -> (PhotoAnalysis, Double) in
                    try job.check("while decoding \(input.name)")
                    hook?(input.name)
                    let start = DispatchTime.now().uptimeNanoseconds
                    let image: RGBImage
                    do throws(ImageError) {
                        image = try ImageDecoder.decode(bytes: input.bytes, path: input.name, options: options).image
                    } catch {
                        throw ServiceError(.image(input: input.name, message: Self.message(for: error)))
                    }
                    let decodeMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    try job.check("while analysing \(input.name)")
                    do { return (try analyzer.analyze(image), decodeMs) } catch {
                        throw ServiceError(.image(input: input.name, message: "\(error)"))
                    }
                }
            }
        }
        let faces = results.reduce(0) { total, part in total + ((try? part.result.get())?.0.faces.count ?? 0) }
        let records = try Self.records(results, isMultipart: isMultipart, context: context, metrics: metrics) { (analysis: PhotoAnalysis, decodeMs: Double) -> [String: Any] in
            var record = analysis.jsonFields(labels: analyzer.classifier.labels)
            let t = analysis.timing
            record["timing_ms"] = ["decode": decodeMs, "detect": t.detect, "align": t.align, "classify": t.classify,
                                   "total": decodeMs + t.detect + t.align + t.classify]
            return record
        }
        metrics.recordFaces(faces)
        return json(.ok, isMultipart ? ["results": records] as [String: Any] : records[0])
    }

    /// One part's outcome: the part's name and its result or why it was refused.
    struct PartResult<Value: Sendable>: Sendable {
        let input: String
        let result: Result<Value, ServiceError>
    }

    /// Runs one part's work on a worker: a ``ServiceError`` about this part becomes its entry; the
    /// processing deadline (which ends the whole request) and anything else is thrown on.
    static func eachPart<Value: Sendable>(_ input: Multipart.FilePart, _ work: () throws -> Value) throws -> PartResult<Value> {
        do {
            return PartResult(input: input.name, result: .success(try work()))
        } catch let error as ServiceError {
            if case .deadlineExceeded = error.kind { throw error }
            return PartResult(input: input.name, result: .failure(error))
        }
    }

    /// The JSON entries of `results` (`fields` of a success, plus `input`; or `input` and `error`), counted
    /// in the metrics and the access log. A single-image request's failure is thrown: it is the answer.
    static func records<Value>(_ results: [PartResult<Value>], isMultipart: Bool, context: FERRequestContext, metrics: ServiceMetrics,
                               fields: (Value) -> [String: Any]) throws -> [[String: Any]] {
        if !isMultipart, let only = results.first, case .failure(let error) = only.result { throw error }
        var failed = 0
        let records = results.map { part -> [String: Any] in
            switch part.result {
            case .success(let value):
                var record = fields(value)
                record["input"] = part.input
                return record
            case .failure(let error):
                failed += 1
                return ["input": part.input, "error": ["status": Int(error.status.code), "message": error.message]]
            }
        }
        context.outcome.set(images: results.count - failed, failed: failed)
        metrics.recordImages(results.count - failed)
        return records
    }

    struct ImageResult: Sendable {
        let classification: Classification
        let decodeMs: Double
        let inferenceMs: Double
    }

    /// Runs on a worker thread.
    static func classifyOne(_ input: Multipart.FilePart, classifier: FERClassifier, options: ImageDecodingOptions,
                            job: WorkerJob, hook: (@Sendable (String) -> Void)?) throws -> ImageResult {
        try job.check("while decoding \(input.name)")
        hook?(input.name)
        let start = DispatchTime.now().uptimeNanoseconds
        let decoded: DecodedImage
        do {
            decoded = try ImageDecoder.decode(bytes: input.bytes, path: input.name, options: options)
        } catch {
            throw ServiceError(.image(input: input.name, message: message(for: error)))
        }
        let decodedAt = DispatchTime.now().uptimeNanoseconds
        try job.check("while classifying \(input.name)")
        let classification: Classification
        do { classification = try classifier.classify(decoded.image) } catch {
            throw ServiceError(.image(input: input.name, message: "\(error)"))
        }
        let end = DispatchTime.now().uptimeNanoseconds
        return ImageResult(classification: classification, decodeMs: Double(decodedAt - start) / 1e6, inferenceMs: Double(end - decodedAt) / 1e6)
    }

    /// The decoder's message, except that the pixel limit names this service's flag (the decoder's
    /// own words are written for `fer-infer`).
    static func message(for error: ImageError) -> String {
        guard case .tooManyPixels(let format, let width, let height, let limit) = error.kind else { return error.message }
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        return "image too large: the \(format.rawValue) header declares \(width)x\(height)" + (overflow ? "" : " = \(count)")
            + " pixels, over this service's limit of \(limit) (a possible decompression bomb; start fer-serve with a larger "
            + "--max-pixels, or FER_SERVE_MAX_PIXELS, to allow it)"
    }
}
