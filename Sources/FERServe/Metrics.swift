import CoreMetrics
import Foundation
import Prometheus

/// The service's metrics, recorded through swift-metrics into a Prometheus registry of its own (no
/// global bootstrap, so several services can live in one process) and rendered by swift-prometheus:
///
/// - `fer_requests_total{route,status}`: requests by route (`/v1/classify`, `/healthz`,
///   `/metrics` or `other`) and status;
/// - `fer_errors_total`: requests answered 4xx or 5xx;
/// - `fer_request_duration_seconds`: latency histogram (buckets ``buckets``);
/// - `fer_images_total`: images classified or analysed;
/// - `fer_faces_total`: faces found by `/v1/analyze`;
/// - `fer_workers_busy`, `fer_worker_queue_length`: classifications running, requests waiting for one;
/// - `fer_memory_returns_total`: times the memory of a burst of request bodies was given back to the
///   system (``ServerSettings/returnMemoryAfterBytes``);
/// - `fer_model_info{architecture}`: 1, naming the model.
public final class ServiceMetrics: Sendable {
    /// Upper bounds of the latency histogram, in seconds.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let routes: Set<String> = ["/v1/classify", "/v1/analyze", "/healthz", "/metrics"]

    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let errors: CoreMetrics.Counter
    private let duration: CoreMetrics.Timer
    private let images: CoreMetrics.Counter
    private let faces: CoreMetrics.Counter
    private let memoryReturns: CoreMetrics.Counter
    let workersBusy: CoreMetrics.Gauge
    let queueLength: CoreMetrics.Gauge

    init(model: String) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["fer_request_duration_seconds"] =
            Self.buckets.map { Duration.nanoseconds(Int64(($0 * 1e9).rounded())) }
        self.factory = factory
        errors = CoreMetrics.Counter(label: "fer_errors_total", factory: factory)
        duration = CoreMetrics.Timer(label: "fer_request_duration_seconds", factory: factory)
        images = CoreMetrics.Counter(label: "fer_images_total", factory: factory)
        faces = CoreMetrics.Counter(label: "fer_faces_total", factory: factory)
        memoryReturns = CoreMetrics.Counter(label: "fer_memory_returns_total", factory: factory)
        workersBusy = CoreMetrics.Gauge(label: "fer_workers_busy", factory: factory)
        queueLength = CoreMetrics.Gauge(label: "fer_worker_queue_length", factory: factory)
        workersBusy.record(0)
        queueLength.record(0)
        CoreMetrics.Gauge(label: "fer_model_info", dimensions: [("architecture", model)], factory: factory).record(1)
    }

    func record(route: String, status: Int, seconds: Double) {
        let label = Self.routes.contains(route) ? route : "other"
        CoreMetrics.Counter(label: "fer_requests_total", dimensions: [("route", label), ("status", "\(status)")], factory: factory)
            .increment()
        if status >= 400 { errors.increment() }
        duration.recordNanoseconds(Int64((seconds * 1e9).rounded()))
    }

    func recordImages(_ count: Int) { images.increment(by: count) }

    func recordFaces(_ count: Int) { faces.increment(by: count) }

    func recordMemoryReturn() { memoryReturns.increment() }

    /// The metrics as Prometheus text (exposition format 0.0.4).
    public func prometheusText() -> String { registry.emitToString() }
}
