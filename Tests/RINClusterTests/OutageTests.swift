// The database goes away and comes back (pg-throwaway.sh stop/kill, then start): calls in between
// throw `databaseUnavailable` (HTTP 503) instead of hanging, nothing stored is lost, calls after
// it succeed on new connections, and a listener hears `.reconnected` and then notifications again.
import Foundation
import RINCluster
import RINJobs
import RINTestSupport
import XCTest

final class OutageTests: PostgresTestCase, @unchecked Sendable {
    func assertUnavailable<T>(_ name: String, file: StaticString = #filePath, line: UInt = #line,
                              _ body: () throws(JobError) -> T) {
        do {
            _ = try body()
            XCTFail("\(name) answered while the database was down", file: file, line: line)
        } catch {
            guard case .databaseUnavailable = error else {
                return XCTFail("\(name): expected databaseUnavailable, got \(error)", file: file, line: line)
            }
        }
    }

    /// Waits until `store` answers again (the pool reconnects with backoff).
    func waitForDatabase(_ store: PostgresJobStore) {
        for _ in 0..<120 {
            if store.ping() { return }
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTFail("the store did not reconnect")
    }

    /// Starts listening on `store` and waits until a notification from `sender` arrives.
    func listen(_ store: PostgresJobStore, sender: PostgresJobStore) throws -> EventRecorder {
        let heard = EventRecorder()
        store.listen { heard.record($0) }
        for _ in 0..<50 {
            let probe = try sender.submit(queuedRecord(model: "probe"), maxQueued: 1000).record
            if heard.wait(for: 0.2, { $0 == .changed(probe.id) }) { return heard }
        }
        XCTFail("never heard a notification")
        return heard
    }

    func checkOutage(stop: () throws -> Void) throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let heard = try listen(b, sender: a)
        let job = try a.submit(queuedRecord(), maxQueued: 100).record
        var run = try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .seconds(120)).first)
        let image = Data((0..<5000).map { UInt8(truncatingIfNeeded: $0) })
        try a.writeImage(image, of: job.id, index: 0)

        try stop()
        assertUnavailable("fetch") { () throws(JobError) in try a.fetch(job.id) }
        assertUnavailable("submit") { () throws(JobError) in try a.submit(queuedRecord(), maxQueued: 100) }
        assertUnavailable("claim") { () throws(JobError) in try b.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)) }
        assertUnavailable("renew") { () throws(JobError) in try a.renew([job.id], lease: .seconds(60)) }
        run.progress.step = 2
        run.revision += 1
        assertUnavailable("write") { () throws(JobError) in try a.write(run) }
        assertUnavailable("list") { () throws(JobError) in try b.list(status: nil, limit: 10, offset: 0) }
        assertUnavailable("queuedCount") { () throws(JobError) in try b.queuedCount() }
        assertUnavailable("readImage") { () throws(JobError) in try b.readImage(of: job.id, index: 0) }
        XCTAssertFalse(a.ping())
        XCTAssertFalse(b.probeWritable())

        try server.start()
        waitForDatabase(a)
        waitForDatabase(b)
        // Nothing was lost, and both boxes work again.
        XCTAssertEqual(try b.fetch(job.id).status, .running)
        XCTAssertEqual(try b.readImage(of: job.id, index: 0), image)
        XCTAssertEqual(try a.renew([job.id], lease: .seconds(60)), [job.id: .held(cancelRequested: false)])
        try a.write(run)
        XCTAssertEqual(try b.fetch(job.id).progress.step, 2)
        let later = try b.submit(queuedRecord(), maxQueued: 100).record
        XCTAssertEqual(try a.fetch(later.id), later)

        XCTAssertTrue(heard.wait(for: 60) { $0 == .reconnected }, "the listener reconnects and says so")
        let announced = try a.submit(queuedRecord(), maxQueued: 100).record
        XCTAssertTrue(heard.wait { $0 == .changed(announced.id) }, "notifications flow again")
    }

    func testDatabaseRestart() throws {
        try checkOutage { try server.stop() }
    }

    func testDatabaseCrash() throws {
        try checkOutage { try server.kill() }
    }

    func testUnreachableDatabaseAnswersQuickly() throws {
        // Nothing listens on this port: connections are refused.
        var url = database!
        url.port = 1
        let store = try makeStore(database: url, prepare: false)
        do {
            try store.prepare()
            XCTFail("prepared without a database")
        } catch {
            guard case .databaseUnavailable = error else { return XCTFail("unexpected \(error)") }
        }
        assertUnavailable("fetch") { () throws(JobError) in try store.fetch(JobID("0000000000000001")!) }
        XCTAssertFalse(store.ping())
    }
}
