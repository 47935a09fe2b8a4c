import Dispatch
import Foundation
import Hummingbird
import Logging
import NIOCore

func json(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    var fields = headers
    fields[.contentType] = "application/json"
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Turns every failure (unknown paths and methods included) into a JSON error, counts requests,
/// errors and latency, and writes one access-log line per request: method, path, status, duration,
/// and the number of images (and of parts refused on their own) or the error. An error that breaks the
/// connection's framing is answered with `Connection: close` (``RequestBodyGuard`` then closes it); a
/// 503 of the in-flight budget with `Retry-After: 1`.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = FERRequestContext
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let path = request.uri.path
        var failure: ServiceError?
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as ServiceError {
            failure = error
            response = Response(status: .internalServerError)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = FERService.routes[path] {
                failure = ServiceError(.methodNotAllowed(method: request.method.rawValue, path: path, allowed: allowed))
            } else if error.status == .notFound {
                failure = ServiceError(.notFound(method: request.method.rawValue, path: path))
            } else {
                failure = ServiceError(.http(error.status, message: error.body ?? error.status.reasonPhrase))
            }
            response = Response(status: .internalServerError)
        } catch {
            failure = ServiceError(.internalError("\(error)"))
            response = Response(status: .internalServerError)
        }
        if let failure {
            var headers: HTTPFields = [.contentType: "application/json"]
            if case .methodNotAllowed(_, _, let allowed) = failure.kind { headers[.allow] = allowed.joined(separator: ", ") }
            if case .inflightBudgetExhausted = failure.kind { headers[.retryAfter] = "1" }
            if failure.closesConnection { headers[.connection] = "close" }
            response = Response(status: failure.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: failure.jsonBody)))
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        metrics.record(route: path, status: Int(response.status.code), seconds: seconds)
        var metadata: Logger.Metadata = [:]
        if let counts = context.outcome.images {
            metadata["images"] = .stringConvertible(counts.images)
            if counts.failed > 0 { metadata["failed"] = .stringConvertible(counts.failed) }
        }
        if let failure { metadata["error"] = .string(failure.message) }
        context.logger.log(level: .info, "\(request.method.rawValue) \(path) \(response.status.code) \(String(format: "%.1f", seconds * 1e3)) ms",
                           metadata: metadata)
        return response
    }
}
