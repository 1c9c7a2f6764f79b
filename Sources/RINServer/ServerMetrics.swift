import Foundation
import Metrics
import Prometheus

/// The process's metrics backend: swift-prometheus bootstrapped once for swift-metrics, so the job
/// layer's `Metrics` counters and timers and the server's own land in one registry that
/// `GET /metrics` renders.
public enum MetricsBackend {
    /// The registry `/metrics` emits.
    public static var registry: PrometheusCollectorRegistry { shared.registry }

    /// Bootstraps swift-metrics with Prometheus. Idempotent (swift-metrics allows one bootstrap per
    /// process; tests start many servers in one process). Call before creating the job service so
    /// its metric handles bind to this backend.
    public static func bootstrap() { _ = shared }

    private static let shared: Shared = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Step times run from milliseconds (tiny test models) to seconds (full-size CPU steps).
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        MetricsSystem.bootstrap(factory)
        return Shared(registry: registry)
    }()

    private final class Shared: Sendable {
        let registry: PrometheusCollectorRegistry
        init(registry: PrometheusCollectorRegistry) { self.registry = registry }
    }

    /// Resident set size of this process in bytes, from /proc/self/statm (0 where unavailable).
    public static func residentMemoryBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// The server's own metrics: HTTP requests by route and status, request durations, and the
/// process's resident memory refreshed on every scrape.
struct HTTPMetrics: Sendable {
    private let residentMemory = Gauge(label: "rind_process_resident_memory_bytes")

    /// Methods that get their own label; any other method string (clients choose it freely, and
    /// every label value is a series kept for the life of the process) is counted as "other".
    static let labelledMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    static func methodLabel(_ method: String) -> String { labelledMethods.contains(method) ? method : "other" }

    /// `route` must come from a closed set (route templates, "unmatched") and `method` from
    /// ``methodLabel(_:)``.
    func recordRequest(route: String, method: String, status: Int, seconds: Double) {
        Counter(label: "rind_http_requests_total",
                dimensions: [("route", route), ("method", method), ("status", String(status))]).increment()
        Metrics.Timer(label: "rind_http_request_duration_seconds", dimensions: [("route", route)])
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Renders the registry after refreshing the process memory gauge. Queue depth, running jobs,
    /// jobs by outcome and step times come from the job layer's own metrics (`JobMetrics`).
    func render() -> String {
        residentMemory.record(MetricsBackend.residentMemoryBytes())
        return MetricsBackend.registry.emitToString()
    }
}
