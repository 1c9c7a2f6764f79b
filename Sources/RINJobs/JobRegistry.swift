// Job state in memory: every job the service knows, the queue, idempotency keys, tombstones and
// the service's flags, under one lock. Nothing here does I/O: the files are written by the
// service outside this lock (JobLifecycle.swift), in the order each job's `writeLock` gives.
import Foundation
import RINModel

/// One job in memory. Guarded by the registry's lock, except `writeLock`, which orders this job's
/// writes to storage (taken without the registry's lock held; that lock may be taken inside it).
final class JobEntry {
    var record: JobRecord
    let checkpoint: RINCheckpoint?
    /// The latest preview of an active job (finished jobs' previews are read from storage).
    var preview: JobImage?
    var subscribers: [JobSubscription] = []
    /// Removed (deleted or expired): nothing may be written for it any more.
    var deleted = false
    /// When the current run started, for progress and ETA.
    var runStart: ContinuousClock.Instant?
    let writeLock = NSLock()

    init(record: JobRecord, checkpoint: RINCheckpoint?) {
        self.record = record
        self.checkpoint = checkpoint
    }

    var id: JobID { record.id }
}

/// The service's state. Every member is used with `lock` held (the `…` in doc comments below
/// assumes it), except `lock` itself; schedulers wait on `lock` for work.
final class JobRegistry: @unchecked Sendable {
    let lock = NSCondition()
    var entries: [JobID: JobEntry] = [:]
    var queue: JobQueue
    var idempotency: [String: JobID] = [:]
    /// Deleted and expired jobs, with when they went.
    var tombstones: [JobID: Date] = [:]
    /// False once the service drains.
    var accepting = true
    /// Running jobs stop after their current step once this has passed (drain).
    var drainDeadline: ContinuousClock.Instant?
    /// Scheduler threads still running.
    var liveSchedulers = 0
    /// Jobs being sampled now.
    var running = 0
    /// When a scheduler last admitted, stepped or ended a job (see `JobService.isMakingProgress`).
    var lastProgress = ContinuousClock.now
    /// Schedulers admit no job until a probe write succeeds (a result could not be stored).
    var storageBlocked = false
    /// Jobs whose latest record could not be written; written again when storage returns.
    var unsaved: Set<JobID> = []
    var lastProbe: (at: ContinuousClock.Instant, writable: Bool)?

    init(maxQueue: Int) {
        queue = JobQueue(capacity: maxQueue)
    }

    /// `body` with the lock held; its error, if any, passes through as it is.
    func locked<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Tombstones kept at most; the oldest are forgotten first (then such an id answers 404).
    static let maxTombstones = 10_000

    /// A live job, or `gone` (tombstoned) / `notFound`.
    func entry(_ id: JobID) throws(JobError) -> JobEntry {
        if let entry = entries[id], !entry.deleted { return entry }
        if tombstones[id] != nil { throw .gone(id) }
        throw .notFound(id)
    }

    func snapshot(_ entry: JobEntry) -> JobSnapshot {
        JobSnapshot(record: entry.record, queuePosition: queue.position(of: entry.record.id))
    }

    /// Tells the job's subscribers (in-memory buffers; never blocks).
    func emit(_ entry: JobEntry, kind: JobEvent.Kind, preview: JobImage? = nil) {
        entry.subscribers.removeAll { !$0.isOpen }
        guard !entry.subscribers.isEmpty else { return }
        let event = JobEvent(kind: kind, job: snapshot(entry),
                             preview: kind == .preview ? entry.preview : preview)
        for subscriber in entry.subscribers { subscriber.push(event) }
        if event.isTerminal { entry.subscribers.removeAll() }
    }

    static func terminalKind(_ status: JobStatus) -> JobEvent.Kind? {
        switch status {
        case .succeeded: .succeeded
        case .failed: .failed
        case .canceled: .canceled
        case .queued, .running: nil
        }
    }

    /// Back to `queued` with no progress and no preview (the caller persists and tells subscribers).
    func resetToQueued(_ entry: JobEntry) {
        entry.record.status = .queued
        entry.record.startedAt = nil
        entry.record.progress = JobProgress(step: 0, steps: entry.record.parameters.steps)
        entry.record.previewStep = nil
        entry.preview = nil
        entry.record.revision += 1
    }

    /// Seconds until a running job should be done, for Retry-After.
    func retryAfter(fallback: Int) -> Int {
        let etas = entries.values.compactMap { $0.record.status == .running ? $0.record.progress.etaSeconds : nil }
        guard let soonest = etas.min() else { return max(1, fallback) }
        return max(1, Int(soonest.rounded(.up)))
    }

    func retryAfter(for entry: JobEntry, fallback: Int) -> Int {
        if entry.record.status == .running, let eta = entry.record.progress.etaSeconds {
            return max(1, Int(eta.rounded(.up)))
        }
        return retryAfter(fallback: fallback)
    }
}
