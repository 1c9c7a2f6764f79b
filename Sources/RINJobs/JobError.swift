// Errors of the job layer (STYLE.md #6): the server alone maps them to HTTP statuses.
import Foundation

/// Why a job operation failed. Each case carries what a problem+json body needs.
public enum JobError: Error, CustomStringConvertible, Equatable, Sendable {
    /// `model` is not loaded; `available` lists those that are.
    case unknownModel(String, available: [String])
    /// A request parameter is out of range; `message` states the allowed range.
    case invalidParameter(name: String, message: String)
    /// The queue holds `Configuration.maxQueue` jobs; try again in about `retryAfter` seconds.
    case queueFull(retryAfter: Int)
    /// The service is draining (or drained) and accepts no new jobs.
    case shuttingDown
    /// No such job, now or before.
    case notFound(JobID)
    /// The job existed but was deleted or expired (retention): HTTP 410.
    case gone(JobID)
    /// The idempotency key was used before for a different request.
    case idempotencyConflict(key: String, existing: JobID)
    /// Results were asked for while the job is queued or running; about `retryAfter` seconds left.
    case notFinished(JobID, status: JobStatus, retryAfter: Int)
    /// The job finished without images (failed or canceled).
    case noResult(JobID, status: JobStatus)
    /// `index` is not in `0..<count`.
    case imageIndexOutOfRange(JobID, index: Int, count: Int)
    /// No preview exists yet (or previews are off for this job).
    case noPreview(JobID)
    /// The state directory could not be read or written.
    case storage(path: String, message: String)
    /// The state directory's file system is full (ENOSPC, EDQUOT): try again later.
    case storageFull(path: String, message: String)
    /// The shared job database (`rind serve --database`) cannot be reached now; the store
    /// reconnects by itself: try again in a few seconds (HTTP 503).
    case databaseUnavailable(message: String)
    /// A fenced write found that this box no longer holds the job: its lease expired and another
    /// box claimed it. Internal: the run is dropped, nothing is written.
    case leaseLost(JobID)

    public var description: String {
        switch self {
        case let .unknownModel(name, available):
            "unknown model '\(name)'; loaded: \(available.joined(separator: ", "))"
        case let .invalidParameter(name, message):
            "invalid parameter '\(name)': \(message)"
        case let .queueFull(retryAfter):
            "the job queue is full; retry in about \(retryAfter) s"
        case .shuttingDown:
            "the service is shutting down and accepts no new jobs"
        case let .notFound(id):
            "no job \(id)"
        case let .gone(id):
            "job \(id) was deleted or expired"
        case let .idempotencyConflict(key, existing):
            "idempotency key '\(key)' was already used by job \(existing) with different parameters"
        case let .notFinished(id, status, retryAfter):
            "job \(id) is \(status.rawValue); retry in about \(retryAfter) s"
        case let .noResult(id, status):
            "job \(id) \(status.rawValue) and has no images"
        case let .imageIndexOutOfRange(id, index, count):
            "job \(id) has images 0..<\(count); \(index) is out of range"
        case let .noPreview(id):
            "job \(id) has no preview yet"
        case let .storage(path, message), let .storageFull(path, message):
            "state directory error at \(path): \(message)"
        case let .databaseUnavailable(message):
            "the job database is unavailable: \(message)"
        case let .leaseLost(id):
            "job \(id) is held by another box now"
        }
    }
}
