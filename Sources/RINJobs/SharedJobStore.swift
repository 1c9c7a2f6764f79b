// A job store shared by several rind processes ("boxes"): the queue itself lives in it, any box
// claims queued jobs of the models it has loaded, holds a lease on each while it runs it, and any
// box answers for any job. RINCluster's PostgreSQL store implements it; `JobService` uses it in
// place of the state directory when `rind serve --database URL` is given (issue 13).
//
// Contract (what `JobService` relies on):
// - Every method may be called from any thread and blocks until the database answered. None may be
//   called from an event-loop thread of the store's own client.
// - Errors: `JobError.databaseUnavailable` when the database cannot be reached (HTTP 503; the
//   store reconnects by itself), `JobError.leaseLost` when a fenced write finds that this box no
//   longer holds the job (its lease expired and another box claimed it: this box drops the run),
//   otherwise the errors each method names.
// - The `JobStorage` writes (`write`, `writeImage`, `writePreview`) of a job are fenced: they
//   change the job only while this box (`owner`) holds it. `create` is not used (see `submit`);
//   `loadAll`/tombstone methods serve nothing in cluster mode.
// - `write` stores the holder's record as given (status, progress, preview step, revision...)
//   except two things: it never clears a `cancelRequested` the store already has (another box may
//   have asked between two writes of the holder; the holder learns of it at its next `renew`),
//   and it leaves owner and lease alone while the status is `running` (a finished status ends the
//   hold). The holder writes `running` at the start of its run, then progress and previews while
//   it runs (about one write per sampling step), then the final status.
// - Changes that other boxes must hear of are announced (`listen`) in the same transaction that
//   makes them: a submit announces the queue, a progress/preview/finish/cancel/delete announces
//   the job.
import Foundation
import Logging
import RINDiffusion

/// What a lease renewal learned about one job this box runs.
public enum LeaseState: Sendable, Equatable {
    /// Still held until `now + lease`; `cancelRequested` when some box asked to cancel it.
    case held(cancelRequested: Bool)
    /// Deleted by some box: drop the run, write nothing.
    case deleted
    /// Another box holds it now (this box's lease expired): drop the run, write nothing.
    case lost
}

/// What a box hears from the shared store.
public enum SharedStoreEvent: Sendable, Equatable {
    /// A job was queued (or requeued): claimers with free slots look again.
    case queued
    /// The job's record, preview or images changed, or it was canceled or deleted.
    case changed(JobID)
    /// The notification connection came back after a loss; notifications in between are lost, so
    /// whoever waits on jobs reads them again.
    case reconnected
}

/// What `SharedJobStore.submit` answers: the job, and the queue figures the caller needs, read in
/// the same transaction (no further round trips for the submitter's answer and the queue gauge).
public struct SharedSubmission: Sendable, Equatable {
    /// The new job's record, or the existing job's when `replayed`.
    public var record: JobRecord
    /// True when `record` is an existing job with the same idempotency key (nothing was inserted).
    public var replayed: Bool
    /// The job's place in the cluster's queue (1 for the next queued job the cluster runs, as
    /// `queuePosition(of:)` counts); nil when it is not queued (a replayed job that already ran).
    public var queuePosition: Int?
    /// Queued jobs over the cluster after the submit (`queuedCount()`), for the queue gauge.
    public var queuedCount: Int

    public init(record: JobRecord, replayed: Bool, queuePosition: Int?, queuedCount: Int) {
        self.record = record
        self.replayed = replayed
        self.queuePosition = queuePosition
        self.queuedCount = queuedCount
    }
}

/// The shared store; see the contract at the top of this file.
public protocol SharedJobStore: JobStorage {
    /// This process's lease-holder name (box name + a per-start suffix), unique in the cluster.
    var owner: String { get }

    /// Queues a new job. The queue bound is the cluster's: more than `maxQueued` queued jobs over
    /// all boxes throws `queueFull`. When `record.idempotencyKey` is already used by a job that is
    /// not deleted, returns that job's record with `replayed == true` and inserts nothing (the
    /// caller compares the requests). Announces `.queued`. Answers, from the same transaction, the
    /// job's queue position and the cluster's queued count, so that a submit is one round trip.
    func submit(_ record: JobRecord, maxQueued: Int) throws(JobError) -> SharedSubmission

    /// The job's record; throws `gone` for a deleted or expired one and `notFound` for an unknown.
    func fetch(_ id: JobID) throws(JobError) -> JobRecord

    /// 1 for the next queued job the cluster runs; nil when the job is not queued.
    func queuePosition(of id: JobID) throws(JobError) -> Int?

    /// `queuePosition` of each of `ids` in one round trip (a page of a list); jobs that are not
    /// queued are left out.
    func queuePositions(of ids: [JobID]) throws(JobError) -> [JobID: Int]

    /// Jobs newest first (created_at, then id), optionally of one status, and how many match.
    func list(status: JobStatus?, limit: Int, offset: Int) throws(JobError) -> (records: [JobRecord], total: Int)

    /// Queued jobs over the cluster.
    func queuedCount() throws(JobError) -> Int

    /// Claims up to `limit` jobs of `models` for this box, oldest first (`FOR UPDATE SKIP
    /// LOCKED`): queued ones, and running ones whose lease expired (their box died). Each comes
    /// back `running`, owned by `owner`, leased until now + `lease`, `attempts` + 1, with its
    /// progress reset; it runs again from its recorded seed. Expired running jobs that were asked
    /// to cancel become `canceled` instead (announced), and are not returned.
    func claim(models: [String], limit: Int, lease: Duration) throws(JobError) -> [JobRecord]

    /// Extends the leases of the jobs this box runs; what each is now.
    func renew(_ ids: [JobID], lease: Duration) throws(JobError) -> [JobID: LeaseState]

    /// Gives a job this box holds back to the queue (drain, or its images could not be stored):
    /// `queued`, no owner, progress and preview reset. Announces `.queued`.
    func release(_ id: JobID) throws(JobError)

    /// Cancels a queued job at once (`canceled`), or asks the box running it to stop
    /// (`cancelRequested`); a finished job is returned unchanged. Returns the record after.
    func requestCancel(_ id: JobID) throws(JobError) -> JobRecord

    /// Deletes a job wherever it is (record, images, preview) and leaves a tombstone (`gone`
    /// from then on). Idempotent: deleting a deleted job succeeds; an unknown one throws `notFound`.
    func delete(_ id: JobID) throws(JobError)

    /// Retention over the cluster: deletes finished jobs beyond the newest `keepJobs`, and those
    /// finished before `finishedBefore`, leaving tombstones. Returns how many went.
    func expire(keepJobs: Int?, finishedBefore: Date?) throws(JobError) -> Int

    /// Starts delivering events to `handler` (on a thread of the store's); keeps listening across
    /// reconnects (then delivers `.reconnected`). Called once, before the service starts its
    /// schedulers.
    func listen(_ handler: @escaping @Sendable (SharedStoreEvent) -> Void)

    /// Whether the database answers now (what `/readyz` reports).
    func ping() -> Bool

    /// Stops listening and closes connections (after the service drained).
    func shutdown()
}
