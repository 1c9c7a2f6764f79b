// Writes: the fenced writes of the box holding a job (each one statement that changes the job only
// while `owner` holds it, with its NOTIFY), deletion and retention with tombstones, and the
// JobStorage methods that cluster mode does not use but that work as their names say.
import Foundation
import Logging
import PostgresNIO
import RINJobs

extension PostgresJobStore {
    /// Replaces the record of a job this box holds. The revision only grows (a cancel from another
    /// box may have advanced it) and a cancel mark set meanwhile is kept; a finished job's lease
    /// ends. Throws `leaseLost` when another box holds the job, `gone`/`notFound` when it was
    /// deleted.
    public func write(_ record: JobRecord) throws(JobError) {
        let json = try Self.encode(record)
        let logger = logger
        let owner = owner
        let id = record.id
        try call { connection in
            let rows = try await connection.query("""
                WITH changed AS (
                    UPDATE rind_jobs SET status = \(record.status.rawValue), finished_at = \(record.finishedAt),
                        attempts = \(record.attempts), revision = greatest(\(record.revision), revision + 1),
                        cancel_requested = cancel_requested OR \(record.cancelRequested),
                        lease_until = CASE WHEN \(record.status.isFinished) THEN NULL ELSE lease_until END,
                        record = \(json)::jsonb
                    WHERE id = \(id.rawValue) AND owner = \(owner)
                    RETURNING id
                )
                SELECT id, pg_notify(\(Self.channel), id) FROM changed
                """, logger: logger).collect()
            if rows.isEmpty { throw try await Self.fenceFailure(id, on: connection, logger: logger) }
        }
    }

    /// Why a fenced write changed nothing: another box holds the job (`leaseLost`), or it is gone.
    static func fenceFailure(_ id: JobID, on connection: PostgresConnection, logger: Logger) async throws -> JobError {
        let rows = try await connection.query("SELECT 1 FROM rind_jobs WHERE id = \(id.rawValue)", logger: logger).collect()
        if !rows.isEmpty { return .leaseLost(id) }
        return try await missing(id, on: connection, logger: logger)
    }

    /// Stores a final image of a job this box holds (replacing one a dead box left).
    public func writeImage(_ data: Data, of id: JobID, index: Int) throws(JobError) {
        let logger = logger
        let owner = owner
        try call { connection in
            let rows = try await connection.query("""
                WITH holder AS (
                    SELECT id FROM rind_jobs WHERE id = \(id.rawValue) AND owner = \(owner) FOR SHARE
                )
                INSERT INTO rind_job_images (job_id, image_index, data)
                SELECT id, \(index), \(data) FROM holder
                ON CONFLICT (job_id, image_index) DO UPDATE SET data = excluded.data
                RETURNING job_id
                """, logger: logger).collect()
            if rows.isEmpty { throw try await Self.fenceFailure(id, on: connection, logger: logger) }
        }
    }

    /// Stores the latest preview of a job this box holds, and announces it. `durable: false`
    /// (intermediate previews, about one per step) commits without waiting for the WAL flush
    /// (`synchronous_commit = off`): a database crash may lose the last few, never corrupt them.
    public func writePreview(_ data: Data, of id: JobID, durable: Bool) throws(JobError) {
        let logger = logger
        let owner = owner
        let store: @Sendable (PostgresConnection) async throws -> Void = { connection in
            let rows = try await connection.query("""
                WITH holder AS (
                    SELECT id FROM rind_jobs WHERE id = \(id.rawValue) AND owner = \(owner) FOR SHARE
                ), stored AS (
                    INSERT INTO rind_job_previews (job_id, data)
                    SELECT id, \(data) FROM holder
                    ON CONFLICT (job_id) DO UPDATE SET data = excluded.data, written_at = now()
                    RETURNING job_id
                )
                SELECT job_id, pg_notify(\(Self.channel), job_id) FROM stored
                """, logger: logger).collect()
            if rows.isEmpty { throw try await Self.fenceFailure(id, on: connection, logger: logger) }
        }
        if durable {
            try call(store)
        } else {
            try transaction { connection in
                try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
                try await store(connection)
            }
        }
    }

    /// Deletes the job (its images and preview cascade) and leaves a tombstone; announced.
    public func delete(_ id: JobID) throws(JobError) {
        let logger = logger
        try transaction { connection in
            let rows = try await connection.query(
                "DELETE FROM rind_jobs WHERE id = \(id.rawValue) RETURNING id", logger: logger).collect()
            if rows.isEmpty {
                let error = try await Self.missing(id, on: connection, logger: logger)
                if case .gone = error { return }
                throw error
            }
            try await connection.query("""
                INSERT INTO rind_tombstones (id, removed_at) VALUES (\(id.rawValue), now())
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
            try await Self.notify(id.rawValue, on: connection, logger: logger)
        }
    }

    /// Retention over the cluster (the rules of JobService's `sweepExpired`): finished jobs ranked
    /// newest finished first; those beyond `keepJobs`, and those finished before `finishedBefore`,
    /// are deleted with tombstones. Tombstones beyond `Configuration.maxTombstones` are forgotten,
    /// oldest first.
    public func expire(keepJobs: Int?, finishedBefore: Date?) throws(JobError) -> Int {
        guard keepJobs != nil || finishedBefore != nil else { return 0 }
        let logger = logger
        let keep = keepJobs.map { max(0, $0) }
        let maxTombstones = configuration.maxTombstones
        return try transaction { connection in
            let removed = try await connection.query("""
                WITH finished AS (
                    SELECT id, finished_at,
                           row_number() OVER (ORDER BY finished_at DESC NULLS LAST, id DESC) AS rank
                    FROM rind_jobs WHERE status IN ('succeeded', 'failed', 'canceled')
                ), doomed AS (
                    SELECT id FROM finished
                    WHERE (\(keep)::bigint IS NOT NULL AND rank > \(keep))
                       OR (\(finishedBefore)::timestamptz IS NOT NULL
                           AND coalesce(finished_at, '-infinity') < \(finishedBefore))
                )
                DELETE FROM rind_jobs job USING doomed
                WHERE job.id = doomed.id AND job.status IN ('succeeded', 'failed', 'canceled')
                RETURNING job.id
                """, logger: logger)
            var ids: [String] = []
            for try await id in removed.decode(String.self) { ids.append(id) }
            guard !ids.isEmpty else { return 0 }
            try await connection.query("""
                INSERT INTO rind_tombstones (id, removed_at) SELECT id, now() FROM unnest(\(ids)::text[]) AS id
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
            try await connection.query("""
                SELECT pg_notify(\(Self.channel), id) FROM unnest(\(ids)::text[]) AS id
                """, logger: logger)
            try await connection.query("""
                DELETE FROM rind_tombstones WHERE id IN (
                    SELECT id FROM rind_tombstones ORDER BY removed_at DESC, id DESC OFFSET \(maxTombstones))
                """, logger: logger)
            return ids.count
        }
    }

    // MARK: JobStorage methods cluster mode does not use

    /// Inserts a record as it is: no queue bound, no idempotency replay (use `submit`).
    public func create(_ record: JobRecord) throws(JobError) {
        let json = try Self.encode(record)
        let logger = logger
        try transaction { connection in
            try await Self.insert(record, json: json, on: connection, logger: logger)
        }
    }

    /// Deletes a job's row (images and preview cascade) without a tombstone; missing is fine.
    public func remove(_ id: JobID) throws(JobError) {
        let logger = logger
        try call { connection in
            try await connection.query("DELETE FROM rind_jobs WHERE id = \(id.rawValue)", logger: logger)
        }
    }

    /// Every record, in queue order (`seq`).
    public func loadAll(logger: Logger) throws(JobError) -> [JobRecord] {
        try call { connection in
            try await Self.records(connection.query(
                "SELECT \(unescaped: Self.recordColumns) FROM rind_jobs ORDER BY seq", logger: logger))
        }
    }

    public func loadTombstones(logger: Logger) -> [Tombstone] {
        do {
            return try call { connection in
                var tombstones: [Tombstone] = []
                let rows = try await connection.query(
                    "SELECT id, removed_at FROM rind_tombstones ORDER BY removed_at, id", logger: logger)
                for try await (id, removedAt) in rows.decode((String, Date).self) {
                    if let id = JobID(id) { tombstones.append(Tombstone(id: id, removedAt: removedAt)) }
                }
                return tombstones
            }
        } catch {
            logger.error("cannot read tombstones", metadata: ["error": "\(error)"])
            return []
        }
    }

    /// Replaces the whole tombstone list.
    public func writeTombstones(_ tombstones: [Tombstone]) throws(JobError) {
        let logger = logger
        let ids = tombstones.map(\.id.rawValue)
        let times = tombstones.map(\.removedAt)
        try transaction { connection in
            try await connection.query("DELETE FROM rind_tombstones", logger: logger)
            try await connection.query("""
                INSERT INTO rind_tombstones (id, removed_at)
                SELECT * FROM unnest(\(ids)::text[], \(times)::timestamptz[])
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
        }
    }

    /// Whether the database answers now (a write needs it to).
    public func probeWritable() -> Bool {
        ping()
    }
}
