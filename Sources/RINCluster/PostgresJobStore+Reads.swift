// Reads any box answers for any job: records, queue positions, lists, counts, images, previews.
import Foundation
import Logging
import PostgresNIO
import RINJobs

extension PostgresJobStore {
    public func fetch(_ id: JobID) throws(JobError) -> JobRecord {
        let logger = logger
        return try call { connection in
            let records = try await Self.records(connection.query(
                "SELECT \(unescaped: Self.recordColumns) FROM rind_jobs WHERE id = \(id.rawValue)", logger: logger))
            guard let record = records.first else { throw try await Self.missing(id, on: connection, logger: logger) }
            return record
        }
    }

    /// Queued jobs up to this one in claim order (`seq`), over all models.
    public func queuePosition(of id: JobID) throws(JobError) -> Int? {
        try queuePositions(of: [id])[id]
    }

    /// `queuePosition` of many jobs in one query (a page of a list); jobs not queued are left out.
    public func queuePositions(of ids: [JobID]) throws(JobError) -> [JobID: Int] {
        guard !ids.isEmpty else { return [:] }
        let logger = logger
        let raw = ids.map(\.rawValue)
        return try call { connection in
            let rows = try await connection.query("""
                SELECT job.id, (SELECT count(*) FROM rind_jobs ahead WHERE ahead.status = 'queued' AND ahead.seq <= job.seq)::bigint
                FROM rind_jobs job WHERE job.id = ANY(\(raw)) AND job.status = 'queued'
                """, logger: logger)
            var positions: [JobID: Int] = [:]
            for try await (id, position) in rows.decode((String, Int).self) {
                if let id = JobID(id) { positions[id] = position }
            }
            return positions
        }
    }

    public func list(status: JobStatus?, limit: Int, offset: Int) throws(JobError) -> (records: [JobRecord], total: Int) {
        let logger = logger
        let status = status?.rawValue
        let limit = max(0, limit)
        let offset = max(0, offset)
        return try call { connection in
            // One snapshot for the page and its total.
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            do {
                let records = try await Self.records(connection.query("""
                    SELECT \(unescaped: Self.recordColumns) FROM rind_jobs
                    WHERE \(status)::text IS NULL OR status = \(status)
                    ORDER BY created_at DESC, id DESC
                    LIMIT \(limit) OFFSET \(offset)
                    """, logger: logger))
                var total = 0
                let rows = try await connection.query(
                    "SELECT count(*)::bigint FROM rind_jobs WHERE \(status)::text IS NULL OR status = \(status)",
                    logger: logger)
                for try await count in rows.decode(Int.self) { total = count }
                try await connection.query("COMMIT", logger: logger)
                return (records, total)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    public func queuedCount() throws(JobError) -> Int {
        let logger = logger
        return try call { connection in
            var total = 0
            let rows = try await connection.query(
                "SELECT count(*)::bigint FROM rind_jobs WHERE status = 'queued'", logger: logger)
            for try await count in rows.decode(Int.self) { total = count }
            return total
        }
    }

    /// A final image; `imageIndexOutOfRange` (with the count stored) when there is no such image.
    public func readImage(of id: JobID, index: Int) throws(JobError) -> Data {
        let logger = logger
        return try call { connection in
            let rows = try await connection.query(
                "SELECT data FROM rind_job_images WHERE job_id = \(id.rawValue) AND image_index = \(index)",
                logger: logger)
            for try await data in rows.decode(Data.self) { return data }
            let counts = try await connection.query("""
                SELECT (SELECT count(*) FROM rind_job_images WHERE job_id = job.id)::bigint
                FROM rind_jobs job WHERE job.id = \(id.rawValue)
                """, logger: logger)
            for try await count in counts.decode(Int.self) {
                throw JobError.imageIndexOutOfRange(id, index: index, count: count)
            }
            throw try await Self.missing(id, on: connection, logger: logger)
        }
    }

    /// The latest preview; `noPreview` when the job has none (yet, or after a re-claim).
    public func readPreview(of id: JobID) throws(JobError) -> Data {
        let logger = logger
        return try call { connection in
            let rows = try await connection.query(
                "SELECT data FROM rind_job_previews WHERE job_id = \(id.rawValue)", logger: logger)
            for try await data in rows.decode(Data.self) { return data }
            let jobs = try await connection.query(
                "SELECT 1 FROM rind_jobs WHERE id = \(id.rawValue)", logger: logger).collect()
            if !jobs.isEmpty { throw JobError.noPreview(id) }
            throw try await Self.missing(id, on: connection, logger: logger)
        }
    }
}
