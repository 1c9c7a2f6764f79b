// The schema: created on a fresh database, a no-op when current, applied once when several boxes
// start at once, and refused when a newer rind migrated the database.
import Foundation
import RINCluster
import RINJobs
import XCTest

final class SchemaTests: PostgresTestCase, @unchecked Sendable {
    func testFreshDatabaseGetsEveryTable() throws {
        XCTAssertEqual(try sql("SELECT to_regclass('rind_schema')::text"), [[nil]])
        _ = try makeStore()
        XCTAssertEqual(try sql("SELECT version::text FROM rind_schema ORDER BY version"), [["1"]])
        for table in ["rind_jobs", "rind_job_images", "rind_job_previews", "rind_tombstones"] {
            XCTAssertEqual(try sql("SELECT to_regclass('\(table)')::text"), [[table]])
        }
        let indexes = try sql("SELECT indexname::text FROM pg_indexes WHERE tablename = 'rind_jobs' ORDER BY 1")
            .compactMap { $0[0] }
        for index in ["rind_jobs_queued", "rind_jobs_leases", "rind_jobs_newest", "rind_jobs_status_newest",
                      "rind_jobs_idempotency_key_key"] {
            XCTAssertTrue(indexes.contains(index), "\(index) missing from \(indexes)")
        }
    }

    func testPreparingACurrentDatabaseChangesNothing() throws {
        let store = try makeStore()
        let before = try sql("SELECT version::text, applied_at::text FROM rind_schema ORDER BY version")
        let job = try store.submit(queuedRecord(), maxQueued: 10).record
        try store.prepare()
        _ = try makeStore(box: "second")
        XCTAssertEqual(try sql("SELECT version::text, applied_at::text FROM rind_schema ORDER BY version"), before)
        XCTAssertEqual(try store.fetch(job.id), job)
    }

    func testBoxesStartingAtOnceMigrateOnce() throws {
        let stores = try (0..<4).map { try makeStore(box: "box\($0)", prepare: false) }
        let errors = onThreads(stores.count) { index -> String? in
            do {
                try stores[index].prepare()
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(errors, [nil, nil, nil, nil])
        XCTAssertEqual(try sql("SELECT version::text FROM rind_schema ORDER BY version"), [["1"]])
        // Every box works on the one schema.
        let job = try stores[0].submit(queuedRecord(), maxQueued: 10).record
        XCTAssertEqual(try stores[3].fetch(job.id).id, job.id)
    }

    func testNewerSchemaIsRefused() throws {
        _ = try makeStore()
        try sql("INSERT INTO rind_schema (version, description) VALUES (99, 'from the future')")
        let store = try makeStore(box: "old", prepare: false)
        do {
            try store.prepare()
            XCTFail("an older rind prepared a database migrated by a newer one")
        } catch {
            guard case let .storage(_, message) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertTrue(message.contains("version 99") && message.contains("newer"), message)
        }
    }

    func testWrongPasswordIsReportedAsTheServerSaysIt() throws {
        let store = try makeStore(prepare: false) { $0.password = "not-the-password" }
        do {
            try store.prepare()
            XCTFail("prepared with a wrong password")
        } catch {
            guard case let .storage(_, message) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertTrue(message.contains("28P01") && message.contains("password authentication failed"), message)
        }
    }
}
