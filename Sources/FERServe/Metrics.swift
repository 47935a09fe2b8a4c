import Foundation

/// Request counters and a latency histogram, rendered in Prometheus text format.
public final class ServiceMetrics: @unchecked Sendable {
    // Safety of @unchecked Sendable: every field is read and written under `lock`.
    private let lock = NSLock()
    private var requests: [String: Int] = [:]     // "route|status" -> count
    private var errors = 0
    private var bucketCounts: [Int]
    private var sum = 0.0
    private var count = 0
    /// Upper bounds of the latency histogram, in seconds.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    init() { bucketCounts = Array(repeating: 0, count: ServiceMetrics.buckets.count) }

    func record(route: String, status: Int, seconds: Double) {
        let known = ["/v1/classify", "/healthz", "/metrics"]
        let label = known.contains(route) ? route : "other"
        lock.lock()
        defer { lock.unlock() }
        requests["\(label)|\(status)", default: 0] += 1
        if status >= 400 { errors += 1 }
        for (i, bound) in ServiceMetrics.buckets.enumerated() where seconds <= bound { bucketCounts[i] += 1 }
        sum += seconds
        count += 1
    }

    /// The metrics as Prometheus text (exposition format 0.0.4).
    public func prometheusText(model: String) -> String {
        lock.lock()
        defer { lock.unlock() }
        var lines = ["# HELP fer_requests_total HTTP requests by route and status.", "# TYPE fer_requests_total counter"]
        for key in requests.keys.sorted() {
            let parts = key.split(separator: "|")
            lines.append("fer_requests_total{route=\"\(parts[0])\",status=\"\(parts[1])\"} \(requests[key]!)")
        }
        lines += ["# HELP fer_errors_total Requests answered with a 4xx or 5xx status.", "# TYPE fer_errors_total counter",
                  "fer_errors_total \(errors)",
                  "# HELP fer_request_duration_seconds Request latency.", "# TYPE fer_request_duration_seconds histogram"]
        for (i, bound) in ServiceMetrics.buckets.enumerated() {
            lines.append("fer_request_duration_seconds_bucket{le=\"\(bound)\"} \(bucketCounts[i])")
        }
        lines += ["fer_request_duration_seconds_bucket{le=\"+Inf\"} \(count)",
                  "fer_request_duration_seconds_sum \(sum)", "fer_request_duration_seconds_count \(count)",
                  "# HELP fer_model_info The model being served.", "# TYPE fer_model_info gauge",
                  "fer_model_info{architecture=\"\(model.replacingOccurrences(of: "\"", with: "'"))\"} 1"]
        return lines.joined(separator: "\n") + "\n"
    }
}
