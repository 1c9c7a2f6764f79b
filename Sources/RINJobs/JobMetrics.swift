// The job layer only emits metrics (swift-metrics); the server bootstraps the Prometheus backend.
import Metrics
import RINDiffusion

/// The service's metrics. Created by `JobService.init`, so `MetricsSystem.bootstrap` must run
/// before the service is created (else they go to the no-op backend).
///
/// - `rind_queue_depth` (gauge): jobs waiting in the queue.
/// - `rind_jobs_running` (gauge): jobs being sampled now.
/// - `rind_jobs_total{outcome="succeeded|failed|canceled"}` (counter): finished jobs.
/// - `rind_step_seconds{model="<name>"}` (timer, a histogram in Prometheus): one denoising step.
struct JobMetrics: Sendable {
    let queueDepth = Gauge(label: "rind_queue_depth")
    let running = Gauge(label: "rind_jobs_running")
    let succeeded = Counter(label: "rind_jobs_total", dimensions: [("outcome", "succeeded")])
    let failed = Counter(label: "rind_jobs_total", dimensions: [("outcome", "failed")])
    let canceled = Counter(label: "rind_jobs_total", dimensions: [("outcome", "canceled")])
    let stepSeconds: [String: Metrics.Timer]

    init(modelNames: [String]) {
        var timers: [String: Metrics.Timer] = [:]
        for name in modelNames {
            timers[name] = Metrics.Timer(label: "rind_step_seconds", dimensions: [("model", name)])
        }
        stepSeconds = timers
    }

    func finished(_ status: JobStatus) {
        switch status {
        case .succeeded: succeeded.increment()
        case .failed: failed.increment()
        case .canceled: canceled.increment()
        case .queued, .running: break
        }
    }
}
