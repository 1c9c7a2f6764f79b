// Results and forgetting: images and previews round trips through the database, delete with
// tombstones (410 from every box), retention over the cluster.
import Foundation
import RINCluster
import RINJobs
import XCTest

final class RetentionTests: PostgresTestCase, @unchecked Sendable {
    /// Bytes of every value, so an encoding slip (text, escaping, truncation at a zero) shows.
    func bytes(_ count: Int, seed: UInt8) -> Data {
        Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) })
    }

    /// Claims `job` on `store` and finishes it succeeded at `finishedAt`, with `images` images.
    func finish(_ job: JobRecord, on store: PostgresJobStore, finishedAt: Date, images: Int = 0) throws -> JobRecord {
        let claimed = try store.claim(models: [job.model], limit: 1, lease: .seconds(60))
        XCTAssertEqual(claimed.map(\.id), [job.id])
        var record = try XCTUnwrap(claimed.first)
        for index in 0..<images {
            try store.writeImage(bytes(1000 + index, seed: UInt8(index)), of: job.id, index: index)
        }
        record.status = .succeeded
        record.finishedAt = finishedAt
        record.imageCount = images
        record.progress.step = record.progress.steps
        record.revision += 1
        try store.write(record)
        return record
    }

    func testImagesAndPreviewsRoundTrip() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        XCTAssertThrowsJobError(.noPreview(job.id)) { () throws(JobError) in try b.readPreview(of: job.id) }
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).count, 1)
        let first = bytes(70_000, seed: 1)
        try a.writePreview(first, of: job.id, durable: false)
        XCTAssertEqual(try b.readPreview(of: job.id), first)
        let second = bytes(50_000, seed: 2)
        try a.writePreview(second, of: job.id, durable: true)
        XCTAssertEqual(try b.readPreview(of: job.id), second, "the latest preview replaces the one before")

        let images = [bytes(120_000, seed: 3), bytes(1, seed: 0), Data()]
        for (index, image) in images.enumerated() {
            try a.writeImage(image, of: job.id, index: index)
        }
        try a.writeImage(images[0], of: job.id, index: 0)  // written again (a retry): replaced, not doubled
        for (index, image) in images.enumerated() {
            XCTAssertEqual(try b.readImage(of: job.id, index: index), image)
        }
        XCTAssertThrowsJobError(.imageIndexOutOfRange(job.id, index: 3, count: 3)) { () throws(JobError) in
            try b.readImage(of: job.id, index: 3)
        }
        XCTAssertThrowsJobError(.notFound(JobID("00000000000000ac")!)) { () throws(JobError) in
            try b.readImage(of: JobID("00000000000000ac")!, index: 0)
        }
    }

    func testDeleteLeavesATombstoneEverywhere() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        _ = try finish(job, on: a, finishedAt: Date(), images: 2)
        try a.writePreview(Data([1, 2]), of: job.id, durable: true)
        XCTAssertThrowsJobError(.leaseLost(job.id)) { () throws(JobError) in try a.release(job.id) }
        XCTAssertEqual(try b.fetch(job.id).status, .succeeded, "a finished job is not requeued")
        try b.delete(job.id)
        for store in [a, b] {
            XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try store.fetch(job.id) }
            XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try store.readImage(of: job.id, index: 0) }
            XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try store.readPreview(of: job.id) }
            XCTAssertThrowsJobError(.gone(job.id)) { () throws(JobError) in try store.requestCancel(job.id) }
        }
        XCTAssertEqual(try sql("SELECT (SELECT count(*) FROM rind_job_images)::text, (SELECT count(*) FROM rind_job_previews)::text"),
                       [["0", "0"]], "images and previews went with the job")
        try a.delete(job.id)  // again: fine
        XCTAssertThrowsJobError(.notFound(JobID("00000000000000ad")!)) { () throws(JobError) in
            try a.delete(JobID("00000000000000ad")!)
        }
        XCTAssertEqual(try a.list(status: nil, limit: 10, offset: 0).total, 0)
        XCTAssertEqual(a.loadTombstones(logger: testLogger).map(\.id), [job.id])
    }

    func testExpireKeepsTheNewestAndDropsTheOld() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let now = Date()
        let jobs = try submitJobs(a, count: 6)
        // Four finished (an hour, 3, 2 and 1 minutes ago), two still queued.
        let finishedAt = [now.addingTimeInterval(-3600), now.addingTimeInterval(-180),
                          now.addingTimeInterval(-120), now.addingTimeInterval(-60)]
        for (job, time) in zip(jobs, finishedAt) {
            _ = try finish(job, on: a, finishedAt: time, images: 1)
        }
        XCTAssertEqual(try b.expire(keepJobs: nil, finishedBefore: now.addingTimeInterval(-600)), 1)
        XCTAssertThrowsJobError(.gone(jobs[0].id)) { () throws(JobError) in try a.fetch(jobs[0].id) }
        XCTAssertEqual(try b.expire(keepJobs: 2, finishedBefore: nil), 1, "3 finished left, keep the newest 2")
        XCTAssertThrowsJobError(.gone(jobs[1].id)) { () throws(JobError) in try a.fetch(jobs[1].id) }
        XCTAssertEqual(try a.fetch(jobs[2].id).status, .succeeded)
        XCTAssertEqual(try a.fetch(jobs[3].id).status, .succeeded)
        XCTAssertEqual(try b.expire(keepJobs: 2, finishedBefore: nil), 0)
        XCTAssertEqual(try b.expire(keepJobs: 0, finishedBefore: nil), 2)
        XCTAssertEqual(try a.queuedCount(), 2, "queued jobs are never expired")
        XCTAssertEqual(try a.list(status: nil, limit: 10, offset: 0).records.map(\.id), [jobs[5].id, jobs[4].id])
        XCTAssertEqual(try sql("SELECT count(*)::text FROM rind_job_images"), [["0"]])
        XCTAssertEqual(Set(a.loadTombstones(logger: testLogger).map(\.id)), Set(jobs.prefix(4).map(\.id)))
    }

    func testTombstonesAreBounded() throws {
        let a = try makeStore(box: "a") { $0.maxTombstones = 2 }
        let jobs = try submitJobs(a, count: 4)
        for (index, job) in jobs.enumerated() {
            _ = try finish(job, on: a, finishedAt: Date().addingTimeInterval(Double(index)))
        }
        XCTAssertEqual(try a.expire(keepJobs: 0, finishedBefore: nil), 4)
        XCTAssertEqual(a.loadTombstones(logger: testLogger).count, 2)
    }

    func testStorageMethodsOutsideClusterMode() throws {
        let a = try makeStore(box: "a")
        var record = queuedRecord()
        record.status = .succeeded
        record.finishedAt = Date()
        try a.create(record)
        XCTAssertEqual(try a.fetch(record.id), record)
        XCTAssertEqual(try a.loadAll(logger: testLogger), [record])
        let tombstones = [Tombstone(id: JobID("0000000000000001")!, removedAt: Date(timeIntervalSince1970: 1_700_000_000)),
                          Tombstone(id: JobID("0000000000000002")!, removedAt: Date(timeIntervalSince1970: 1_700_000_100))]
        try a.writeTombstones(tombstones)
        XCTAssertEqual(a.loadTombstones(logger: testLogger), tombstones)
        try a.remove(record.id)
        try a.remove(record.id)
        XCTAssertEqual(try a.loadAll(logger: testLogger), [])
        XCTAssertTrue(a.probeWritable())
        XCTAssertTrue(a.ping())
    }
}
