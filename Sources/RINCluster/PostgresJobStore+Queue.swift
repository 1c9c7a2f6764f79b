// The queue in the database: submit (the cluster-wide bound and idempotency keys), claim and
// leases, release, cancel. Each change and its NOTIFY commit in one transaction.
import Foundation
import Logging
import PostgresNIO
import RINDiffusion
import RINJobs

extension PostgresJobStore {
    /// Inserts a queued job under the submit lock, so the count of queued jobs and the insert are
    /// one step for the whole cluster. A used idempotency key returns the existing job (replay);
    /// the unique index on the key backs this up. The store has no wait estimate: `queueFull`
    /// carries `retryAfter: 0`, which the service replaces with its own. The queue figures come
    /// from the same transaction: for a new job, the count taken under the lock plus the job itself
    /// (it is the newest `seq`, so the last queued); for a replay, read as `queueFigures` reads them.
    public func submit(_ record: JobRecord, maxQueued: Int) throws(JobError) -> SharedSubmission {
        let json = try Self.encode(record)
        let logger = logger
        do {
            return try transaction { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(Schema.submitLock))", logger: logger)
                if let key = record.idempotencyKey {
                    let existing = try await Self.records(connection.query(
                        "SELECT \(unescaped: Self.recordColumns) FROM rind_jobs WHERE idempotency_key = \(key)",
                        logger: logger))
                    if let existing = existing.first {
                        let figures = try await Self.queueFigures(of: existing.id, on: connection, logger: logger)
                        return SharedSubmission(record: existing, replayed: true, queuePosition: figures.position,
                                                queuedCount: figures.queued)
                    }
                }
                let rows = try await connection.query(
                    "SELECT count(*)::bigint FROM rind_jobs WHERE status = 'queued'", logger: logger)
                var queued = 0
                for try await count in rows.decode(Int.self) { queued = count }
                if queued >= maxQueued { throw JobError.queueFull(retryAfter: 0) }
                try await Self.insert(record, json: json, on: connection, logger: logger)
                let isQueued = record.status == .queued
                return SharedSubmission(record: record, replayed: false, queuePosition: isQueued ? queued + 1 : nil,
                                        queuedCount: isQueued ? queued + 1 : queued)
            }
        } catch {
            // Two boxes racing past the lock cannot happen, but a key inserted by `create` can.
            if case let .storage(_, message) = error, message.hasPrefix(SQLState.uniqueViolation),
               let key = record.idempotencyKey {
                let existing = try call { connection -> SharedSubmission? in
                    let records = try await Self.records(connection.query(
                        "SELECT \(unescaped: Self.recordColumns) FROM rind_jobs WHERE idempotency_key = \(key)",
                        logger: logger))
                    guard let existing = records.first else { return nil }
                    let figures = try await Self.queueFigures(of: existing.id, on: connection, logger: logger)
                    return SharedSubmission(record: existing, replayed: true, queuePosition: figures.position,
                                            queuedCount: figures.queued)
                }
                if let existing { return existing }
            }
            throw error
        }
    }

    /// A job's queue position (nil when it is not queued) and the number of queued jobs, in one
    /// statement (the position counted as `queuePositions(of:)` counts it).
    static func queueFigures(of id: JobID, on connection: PostgresConnection,
                             logger: Logger) async throws -> (position: Int?, queued: Int) {
        let rows = try await connection.query("""
            SELECT count(*)::bigint,
                   count(*) FILTER (WHERE seq <= (SELECT seq FROM rind_jobs WHERE id = \(id.rawValue)
                                                                            AND status = 'queued'))::bigint
            FROM rind_jobs WHERE status = 'queued'
            """, logger: logger)
        var figures: (position: Int?, queued: Int) = (nil, 0)
        for try await (queued, position) in rows.decode((Int, Int).self) {
            figures = (position > 0 ? position : nil, queued)
        }
        return figures
    }

    /// Inserts a record's row and announces it when it is queued.
    static func insert(_ record: JobRecord, json: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            INSERT INTO rind_jobs (id, model, status, created_at, finished_at, idempotency_key,
                                   cancel_requested, attempts, revision, record)
            VALUES (\(record.id.rawValue), \(record.model), \(record.status.rawValue), \(record.createdAt),
                    \(record.finishedAt), \(record.idempotencyKey), \(record.cancelRequested), \(record.attempts),
                    \(record.revision), \(json)::jsonb)
            """, logger: logger)
        if record.status == .queued {
            try await notify(queuedPayload, on: connection, logger: logger)
        }
        try await notify(record.id.rawValue, on: connection, logger: logger)
    }

    /// Takes queued jobs (and running ones whose lease expired) of `models`, oldest first, rows
    /// another box is claiming at the same moment skipped (`FOR UPDATE SKIP LOCKED`).
    public func claim(models: [String], limit: Int, lease: Duration) throws(JobError) -> [JobRecord] {
        guard !models.isEmpty, limit > 0 else { return [] }
        let logger = logger
        let owner = owner
        let now = configuration.now()
        let leaseSeconds = lease.seconds
        return try transaction { connection in
            let candidates = try await connection.query("""
                SELECT id, status, \(unescaped: Self.recordColumns) FROM rind_jobs
                WHERE model = ANY(\(models))
                  AND (status = 'queued' OR (status = 'running' AND lease_until < now()))
                ORDER BY seq
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
                """, logger: logger).collect()
            var claimed: [JobRecord] = []
            for row in candidates {
                let (_, status, json, revision, cancelRequested) = try row.decode((String, String, String, Int, Bool).self)
                var record = try Self.decode(json)
                record.revision = revision + 1
                record.cancelRequested = cancelRequested
                if status == JobStatus.running.rawValue && cancelRequested {
                    // Its box died after a cancel was asked for: it ends here, not in a new run.
                    record.status = .canceled
                    record.finishedAt = now
                    try await Self.update(record, owner: nil, leaseSeconds: nil, on: connection, logger: logger)
                    continue
                }
                record.status = .running
                record.attempts += 1
                record.progress = JobProgress(step: 0, steps: record.progress.steps)
                record.startedAt = now
                record.finishedAt = nil
                record.previewStep = nil
                record.imageCount = 0
                record.error = nil
                try await Self.update(record, owner: owner, leaseSeconds: leaseSeconds, on: connection, logger: logger)
                try await connection.query(
                    "DELETE FROM rind_job_previews WHERE job_id = \(record.id.rawValue)", logger: logger)
                claimed.append(record)
            }
            return claimed
        }
    }

    /// Rewrites a locked job's row from `record` (every column), sets or clears its holder, and
    /// announces it. `leaseSeconds` nil clears the lease.
    static func update(_ record: JobRecord, owner: String?, leaseSeconds: Double?, on connection: PostgresConnection,
                       logger: Logger) async throws {
        let json = try encode(record)
        try await connection.query("""
            UPDATE rind_jobs SET status = \(record.status.rawValue), finished_at = \(record.finishedAt),
                cancel_requested = \(record.cancelRequested), attempts = \(record.attempts),
                revision = \(record.revision), record = \(json)::jsonb, owner = \(owner),
                lease_until = now() + make_interval(secs => \(leaseSeconds))
            WHERE id = \(record.id.rawValue)
            """, logger: logger)
        try await notify(record.id.rawValue, on: connection, logger: logger)
    }

    /// Extends the leases of jobs this box holds; the others are `lost` (held by another box, or
    /// finished elsewhere) or `deleted`.
    public func renew(_ ids: [JobID], lease: Duration) throws(JobError) -> [JobID: LeaseState] {
        guard !ids.isEmpty else { return [:] }
        let logger = logger
        let owner = owner
        let raw = ids.map(\.rawValue)
        let leaseSeconds = lease.seconds
        return try call { connection in
            var states: [JobID: LeaseState] = [:]
            let renewed = try await connection.query("""
                UPDATE rind_jobs SET lease_until = now() + make_interval(secs => \(leaseSeconds))
                WHERE id = ANY(\(raw)) AND owner = \(owner) AND status = 'running'
                RETURNING id, cancel_requested
                """, logger: logger)
            for try await (id, cancelRequested) in renewed.decode((String, Bool).self) {
                if let id = JobID(id) { states[id] = .held(cancelRequested: cancelRequested) }
            }
            let rest = raw.filter { JobID($0).map { states[$0] == nil } ?? false }
            guard !rest.isEmpty else { return states }
            var existing: Set<String> = []
            let rows = try await connection.query("SELECT id FROM rind_jobs WHERE id = ANY(\(rest))", logger: logger)
            for try await id in rows.decode(String.self) { existing.insert(id) }
            for id in rest {
                if let jobID = JobID(id) { states[jobID] = existing.contains(id) ? .lost : .deleted }
            }
            return states
        }
    }

    /// Puts a job this box holds (running) back in the queue at its old place (its `seq`),
    /// progress and preview reset. Throws `leaseLost` when another box holds it or it finished,
    /// `gone`/`notFound` when it was deleted.
    public func release(_ id: JobID) throws(JobError) {
        let logger = logger
        let owner = owner
        try transaction { connection in
            let rows = try await connection.query("""
                SELECT owner, status, \(unescaped: Self.recordColumns) FROM rind_jobs
                WHERE id = \(id.rawValue) FOR UPDATE
                """, logger: logger).collect()
            guard let row = rows.first else { throw try await Self.missing(id, on: connection, logger: logger) }
            let (holder, status, json, revision, cancelRequested) = try row.decode((String?, String, String, Int, Bool).self)
            // A finished job is held by nobody: its end stands.
            guard holder == owner, status == JobStatus.running.rawValue else { throw JobError.leaseLost(id) }
            var record = try Self.decode(json)
            record.revision = revision + 1
            record.cancelRequested = cancelRequested
            record.status = .queued
            record.progress = JobProgress(step: 0, steps: record.progress.steps)
            record.startedAt = nil
            record.previewStep = nil
            record.imageCount = 0
            try await Self.update(record, owner: nil, leaseSeconds: nil, on: connection, logger: logger)
            try await connection.query("DELETE FROM rind_job_previews WHERE job_id = \(id.rawValue)", logger: logger)
            try await Self.notify(Self.queuedPayload, on: connection, logger: logger)
        }
    }

    /// A queued job is canceled at once; a running one is marked (its box sees the mark when it
    /// renews, and stops); a finished one is left as it is.
    public func requestCancel(_ id: JobID) throws(JobError) -> JobRecord {
        let logger = logger
        let now = configuration.now()
        return try transaction { connection in
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.recordColumns) FROM rind_jobs WHERE id = \(id.rawValue) FOR UPDATE
                """, logger: logger).collect()
            guard let row = rows.first else { throw try await Self.missing(id, on: connection, logger: logger) }
            let (json, revision, cancelRequested) = try row.decode((String, Int, Bool).self)
            var record = try Self.decode(json)
            record.revision = revision
            record.cancelRequested = cancelRequested
            switch record.status {
            case .queued:
                record.status = .canceled
                record.cancelRequested = true
                record.finishedAt = now
                record.revision += 1
                try await Self.update(record, owner: nil, leaseSeconds: nil, on: connection, logger: logger)
            case .running where !record.cancelRequested:
                record.cancelRequested = true
                record.revision += 1
                let json = try Self.encode(record)
                try await connection.query("""
                    UPDATE rind_jobs SET cancel_requested = true, revision = \(record.revision), record = \(json)::jsonb
                    WHERE id = \(id.rawValue)
                    """, logger: logger)
                try await Self.notify(id.rawValue, on: connection, logger: logger)
            case .running, .succeeded, .failed, .canceled:
                break
            }
            return record
        }
    }
}
