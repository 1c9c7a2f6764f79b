// Where jobs are kept: the boundary between the job service and its storage. The service holds
// every job in memory (JobRegistry) and writes through this protocol; `LocalJobStore`
// (LocalJobStore.swift) implements it on the state directory. A database store (PostgreSQL, issue
// 13) implements the same protocol: records, images, previews and tombstones, each write durable
// when it returns unless it says otherwise.
import Foundation
import Logging
import RINDiffusion

/// What `job.json` holds (format 1): one job's record as the storage keeps it.
public struct JobRecord: Codable, Sendable, Equatable {
    public var formatVersion: Int = 1
    public var id: JobID
    public var model: String
    public var request: JobRequest
    public var parameters: SamplingParameters
    public var previewEvery: Int
    public var status: JobStatus
    public var progress: JobProgress
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var error: String?
    public var revision: Int
    public var idempotencyKey: String?
    public var cancelRequested: Bool = false
    public var previewStep: Int?
    public var imageCount: Int = 0
    public var attempts: Int = 0

    public init(id: JobID, model: String, request: JobRequest, parameters: SamplingParameters, previewEvery: Int,
                status: JobStatus, progress: JobProgress, createdAt: Date, startedAt: Date? = nil,
                finishedAt: Date? = nil, error: String? = nil, revision: Int, idempotencyKey: String? = nil,
                cancelRequested: Bool = false, previewStep: Int? = nil, imageCount: Int = 0, attempts: Int = 0) {
        self.id = id
        self.model = model
        self.request = request
        self.parameters = parameters
        self.previewEvery = previewEvery
        self.status = status
        self.progress = progress
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.error = error
        self.revision = revision
        self.idempotencyKey = idempotencyKey
        self.cancelRequested = cancelRequested
        self.previewStep = previewStep
        self.imageCount = imageCount
        self.attempts = attempts
    }
}

/// A deleted or expired job: its id answers 410 Gone, and its files must not come back.
public struct Tombstone: Codable, Sendable, Equatable {
    public var id: JobID
    public var removedAt: Date

    public init(id: JobID, removedAt: Date) {
        self.id = id
        self.removedAt = removedAt
    }
}

/// The job service's durable storage.
///
/// Contract (what `JobService` relies on):
/// - Writes of one job are never concurrent: the service orders them (`JobEntry.writeLock`).
/// - `create` and `write` replace a record atomically and are durable when they return: after a
///   crash a reader finds the old record or the new one, never a mix.
/// - Images are written before the record that says `succeeded`; a preview may be written
///   non-durably (`durable: false`): a restart discards it.
/// - `remove` deletes everything of a job and is idempotent; `loadAll` never returns a job whose
///   removal was started (the service writes the tombstone before it calls `remove`, and
///   `Recovery` finishes removals a crash cut short).
/// - Errors are `JobError.storage`, or `JobError.storageFull` when there is no space: the service
///   then pauses and retries (`probeWritable`) instead of failing jobs.
public protocol JobStorage: Sendable {
    /// Creates whatever the storage needs (directories, tables) if missing.
    func prepare() throws(JobError)
    /// A new job's record (and its place for images); durable when it returns.
    func create(_ record: JobRecord) throws(JobError)
    /// Replaces a job's record; durable when it returns.
    func write(_ record: JobRecord) throws(JobError)
    func writeImage(_ data: Data, of id: JobID, index: Int) throws(JobError)
    func readImage(of id: JobID, index: Int) throws(JobError) -> Data
    /// The latest preview; `durable: false` may skip the flush (intermediate previews).
    func writePreview(_ data: Data, of id: JobID, durable: Bool) throws(JobError)
    func readPreview(of id: JobID) throws(JobError) -> Data
    /// Deletes the job's record, images and preview. Missing is fine.
    func remove(_ id: JobID) throws(JobError)
    /// Every readable record; unreadable ones are set aside and logged, leftovers without a record
    /// are cleaned up. Throws only when the storage itself cannot be read.
    func loadAll(logger: Logger) throws(JobError) -> [JobRecord]
    func loadTombstones(logger: Logger) -> [Tombstone]
    /// Replaces the whole tombstone list; durable when it returns.
    func writeTombstones(_ tombstones: [Tombstone]) throws(JobError)
    /// Whether a record-sized write succeeds now: what readiness and paused schedulers ask.
    func probeWritable() -> Bool
}
