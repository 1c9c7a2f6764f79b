// The database schema, created and migrated by rind itself.
//
// `rind_schema` lists the versions applied. Each migration is a list of statements applied in one
// transaction that first takes a transaction-scoped advisory lock (`Schema.migrationLock`), so
// boxes that start at once apply each version exactly once: the others wait, then see it done. A
// database whose newest version is beyond what this binary knows (a newer rind migrated it) is
// refused: an older binary must not write rows whose meaning it does not know.
//
// Version 1:
//
//   rind_jobs           one row per job. `record` is the whole JobRecord (jsonb: job.json's
//                       keys, dates in seconds since 2001, PostgresJobStore.encode); the
//                       columns are what queries select on or change in SQL: status, model,
//                       created_at, finished_at, idempotency_key (UNIQUE across the cluster),
//                       cancel_requested, owner + lease_until (the box holding a running job,
//                       and until when), attempts, revision. `seq` orders the queue (first come,
//                       first served, whatever the boxes' clocks say). On reads, `revision` and
//                       `cancel_requested` of the columns win over the record's: SQL advances
//                       them without rewriting the record (PostgresJobStore.write).
//   rind_job_images     final images (bytea) per (job, index); deleted with the job.
//   rind_job_previews   the latest preview (bytea) per job; deleted with the job.
//   rind_tombstones     ids of deleted and expired jobs (410 Gone), newest kept.
//
// Indexes serve the claim (queued by model and seq; running by lease expiry), the lists (newest
// first, per status) and retention (finished_at).
import Foundation
import Logging
import PostgresNIO
import RINJobs

enum Schema {
    /// One version's statements, applied in one transaction.
    struct Migration {
        let version: Int
        let description: String
        let statements: [String]
    }

    /// `pg_advisory_xact_lock` key of migrations ("rind" in ASCII, then 1).
    static let migrationLock: Int64 = 0x7269_6E64_0001
    /// `pg_advisory_xact_lock` key of submissions: the cluster-wide queue bound.
    static let submitLock: Int64 = 0x7269_6E64_0002

    /// Every migration, in order; a release only appends.
    static let migrations: [Migration] = [
        Migration(version: 1, description: "jobs, images, previews, tombstones", statements: [
            """
            CREATE TABLE rind_jobs (
                id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
                seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                model text NOT NULL,
                status text NOT NULL
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
                created_at timestamptz NOT NULL,
                finished_at timestamptz,
                idempotency_key text UNIQUE,
                cancel_requested boolean NOT NULL DEFAULT false,
                owner text,
                lease_until timestamptz,
                attempts integer NOT NULL DEFAULT 0,
                revision bigint NOT NULL,
                record jsonb NOT NULL
            )
            """,
            "CREATE INDEX rind_jobs_queued ON rind_jobs (model, seq) WHERE status = 'queued'",
            "CREATE INDEX rind_jobs_leases ON rind_jobs (model, lease_until) WHERE status = 'running'",
            "CREATE INDEX rind_jobs_newest ON rind_jobs (created_at DESC, id DESC)",
            "CREATE INDEX rind_jobs_status_newest ON rind_jobs (status, created_at DESC, id DESC)",
            "CREATE INDEX rind_jobs_finished ON rind_jobs (finished_at) WHERE finished_at IS NOT NULL",
            """
            CREATE TABLE rind_job_images (
                job_id text NOT NULL REFERENCES rind_jobs (id) ON DELETE CASCADE,
                image_index integer NOT NULL CHECK (image_index >= 0),
                data bytea NOT NULL,
                PRIMARY KEY (job_id, image_index)
            )
            """,
            """
            CREATE TABLE rind_job_previews (
                job_id text PRIMARY KEY REFERENCES rind_jobs (id) ON DELETE CASCADE,
                data bytea NOT NULL,
                written_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE rind_tombstones (
                id text PRIMARY KEY,
                removed_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX rind_tombstones_removed ON rind_tombstones (removed_at)",
        ]),
    ]

    /// The newest version this binary knows.
    static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Brings the database to `latestVersion`, one migration per transaction under the migration
    /// lock. Returns the versions this call applied (empty when another box had done it).
    static func migrate(_ connection: PostgresConnection, database: String, logger: Logger) async throws -> [Int] {
        var applied: [Int] = []
        while true {
            let step = try await migrateOneStep(connection, database: database, logger: logger)
            guard let version = step else { return applied }
            applied.append(version)
        }
    }

    /// Applies the next missing migration; nil when the schema is current.
    private static func migrateOneStep(_ connection: PostgresConnection, database: String,
                                       logger: Logger) async throws -> Int? {
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS rind_schema (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var current = 0
            for try await version in try await connection.query(
                "SELECT coalesce(max(version), 0)::integer FROM rind_schema", logger: logger).decode(Int.self) {
                current = version
            }
            if current > latestVersion {
                throw JobError.storage(path: database, message:
                    "the database schema is at version \(current), newer than this rind knows (\(latestVersion)): "
                    + "a newer rind migrated it; upgrade this box")
            }
            guard let next = migrations.first(where: { $0.version > current }) else {
                try await connection.query("COMMIT", logger: logger)
                return nil
            }
            for statement in next.statements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query(
                "INSERT INTO rind_schema (version, description) VALUES (\(next.version), \(next.description))",
                logger: logger)
            try await connection.query("COMMIT", logger: logger)
            logger.info("database schema migrated", metadata: [
                "version": "\(next.version)", "description": "\(next.description)", "database": "\(database)",
            ])
            return next.version
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }
}
