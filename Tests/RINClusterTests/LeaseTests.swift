// Leases: renewal, expiry and re-claim by another box, fenced writes of a box that lost its job,
// release back to the queue. Leases run on the database's clock; the short ones here (0.2 s) are
// waited out with a margin, and the long ones (60 s) never expire during a test.
import Foundation
import RINCluster
import RINJobs
import XCTest

final class LeaseTests: PostgresTestCase, @unchecked Sendable {
    /// Waits until the database's clock has passed every lease of `id`.
    func waitOutLease(of id: JobID) throws {
        for _ in 0..<100 {
            if try sql("SELECT (lease_until < now())::text FROM rind_jobs WHERE id = '\(id)'") == [["true"]] { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("the lease of \(id) did not expire")
    }

    func testExpiredLeaseIsClaimedByAnotherBoxAndTheOldHolderIsFenced() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let held = try a.submit(queuedRecord(seed: 1), maxQueued: 10).record
        let dying = try a.submit(queuedRecord(seed: 2), maxQueued: 10).record
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).map(\.id), [held.id])
        var lost = try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .milliseconds(200)).first)
        XCTAssertEqual(lost.id, dying.id)
        try a.writePreview(Data("preview of the first run".utf8), of: dying.id, durable: false)
        try waitOutLease(of: dying.id)

        // Box b takes the expired one (not the one whose lease runs), as a new attempt.
        let reclaimed = try b.claim(models: ["cifar10"], limit: 5, lease: .seconds(60))
        XCTAssertEqual(reclaimed.map(\.id), [dying.id])
        let again = try XCTUnwrap(reclaimed.first)
        XCTAssertEqual(again.attempts, 2)
        XCTAssertEqual(again.status, .running)
        XCTAssertEqual(again.progress.step, 0)
        XCTAssertEqual(again.parameters.seed, 2, "re-run from its recorded seed")
        XCTAssertNil(again.previewStep)
        XCTAssertThrowsJobError(.noPreview(dying.id)) { () throws(JobError) in try b.readPreview(of: dying.id) }
        XCTAssertEqual(try sql("SELECT owner FROM rind_jobs WHERE id = '\(dying.id)'"), [[b.owner]])

        // Box a learns it lost the job, and nothing it writes lands.
        XCTAssertEqual(try a.renew([held.id, dying.id], lease: .seconds(60)),
                       [held.id: .held(cancelRequested: false), dying.id: .lost])
        lost.progress.step = 9
        lost.revision += 1
        XCTAssertThrowsJobError(.leaseLost(dying.id)) { () throws(JobError) in try a.write(lost) }
        XCTAssertThrowsJobError(.leaseLost(dying.id)) { () throws(JobError) in
            try a.writeImage(Data([1, 2, 3]), of: dying.id, index: 0)
        }
        XCTAssertThrowsJobError(.leaseLost(dying.id)) { () throws(JobError) in
            try a.writePreview(Data([4]), of: dying.id, durable: true)
        }
        XCTAssertThrowsJobError(.leaseLost(dying.id)) { () throws(JobError) in try a.release(dying.id) }
        XCTAssertEqual(try b.fetch(dying.id), again, "the new holder's record is untouched")
        XCTAssertThrowsJobError(.imageIndexOutOfRange(dying.id, index: 0, count: 0)) { () throws(JobError) in
            try b.readImage(of: dying.id, index: 0)
        }
        // The new holder writes.
        var progress = again
        progress.progress.step = 1
        progress.revision += 1
        try b.write(progress)
        XCTAssertEqual(try a.fetch(dying.id), progress)
        XCTAssertEqual(try b.renew([dying.id], lease: .seconds(60)), [dying.id: .held(cancelRequested: false)])
    }

    func testRenewedLeaseIsNotClaimed() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .milliseconds(200)).count, 1)
        XCTAssertEqual(try a.renew([job.id], lease: .seconds(60)), [job.id: .held(cancelRequested: false)])
        Thread.sleep(forTimeInterval: 0.4)
        XCTAssertEqual(try b.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)), [], "a renewed lease holds")
    }

    func testExpiredRunThatWasAskedToCancelEndsCanceled() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .milliseconds(200)).count, 1)
        XCTAssertTrue(try b.requestCancel(job.id).cancelRequested)
        try waitOutLease(of: job.id)
        XCTAssertEqual(try b.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)), [])
        let ended = try b.fetch(job.id)
        XCTAssertEqual(ended.status, .canceled)
        XCTAssertNotNil(ended.finishedAt)
        XCTAssertEqual(ended.attempts, 1)
        XCTAssertEqual(try a.renew([job.id], lease: .seconds(60)), [job.id: .lost])
    }

    func testDeletedJobIsDroppedByItsHolder() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        var run = try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).first)
        try b.delete(job.id)
        XCTAssertEqual(try a.renew([job.id], lease: .seconds(60)), [job.id: .deleted])
        run.revision += 1
        XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try a.write(run) }
        XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in
            try a.writeImage(Data([1]), of: job.id, index: 0)
        }
        XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try a.release(job.id) }
        XCTAssertEqual(try sql("SELECT count(*)::text FROM rind_jobs"), [["0"]], "nothing came back")
    }

    func testReleaseRequeuesAtItsPlace() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let jobs = try submitJobs(a, count: 3)
        let run = try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).first)
        XCTAssertEqual(run.id, jobs[0].id)
        try a.writePreview(Data([9, 9]), of: run.id, durable: false)
        try a.release(run.id)
        let queued = try b.fetch(run.id)
        XCTAssertEqual(queued.status, .queued)
        XCTAssertEqual(queued.progress.step, 0)
        XCTAssertNil(queued.startedAt)
        XCTAssertEqual(queued.attempts, 1)
        XCTAssertEqual(try b.queuePosition(of: run.id), 1, "back at the head")
        XCTAssertThrowsJobError(.noPreview(run.id)) { () throws(JobError) in try b.readPreview(of: run.id) }
        XCTAssertEqual(try sql("SELECT (owner IS NULL AND lease_until IS NULL)::text FROM rind_jobs WHERE id = '\(run.id)'"),
                       [["true"]])
        let next = try XCTUnwrap(b.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).first)
        XCTAssertEqual(next.id, run.id)
        XCTAssertEqual(next.attempts, 2)
        XCTAssertEqual(try a.renew([run.id], lease: .seconds(60)), [run.id: .lost])
    }
}
