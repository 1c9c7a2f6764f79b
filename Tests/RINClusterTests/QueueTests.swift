// The queue over two stores ("boxes") on one database: submit, reads, the cluster-wide bound,
// idempotency keys across boxes, concurrent claims, cancel.
import Foundation
import RINCluster
import RINJobs
import XCTest

struct Submitted: Sendable {
    let id: JobID
    let replayed: Bool
}

final class QueueTests: PostgresTestCase, @unchecked Sendable {
    func testSubmitFetchListAndPositions() throws {
        let store = try makeStore(box: "a")
        let other = try makeStore(box: "b")
        let jobs = try submitJobs(store, count: 5)
        for job in jobs {
            XCTAssertEqual(try other.fetch(job.id), job, "a record comes back exactly as submitted")
        }
        XCTAssertEqual(try jobs.map { try other.queuePosition(of: $0.id) }, [1, 2, 3, 4, 5])
        XCTAssertEqual(try other.queuedCount(), 5)

        let page = try other.list(status: nil, limit: 3, offset: 0)
        XCTAssertEqual(page.total, 5)
        XCTAssertEqual(page.records.map(\.id), jobs.reversed().prefix(3).map(\.id), "newest first")
        let rest = try other.list(status: nil, limit: 3, offset: 3)
        XCTAssertEqual(rest.records.map(\.id), [jobs[1].id, jobs[0].id])
        XCTAssertEqual(rest.total, 5)

        let claimed = try store.claim(models: ["cifar10"], limit: 1, lease: .seconds(60))
        XCTAssertEqual(claimed.map(\.id), [jobs[0].id], "first come, first served")
        XCTAssertNil(try other.queuePosition(of: jobs[0].id))
        XCTAssertEqual(try jobs.dropFirst().map { try other.queuePosition(of: $0.id) }, [1, 2, 3, 4])
        let unknown = JobID("00000000000000ab")!
        let positions = try other.queuePositions(of: jobs.map(\.id) + [unknown])
        XCTAssertEqual(positions, Dictionary(uniqueKeysWithValues: zip(jobs.dropFirst().map(\.id), [1, 2, 3, 4])),
                       "one query: the queued ones, in claim order; the running and the unknown left out")
        XCTAssertEqual(try other.queuePositions(of: []), [:])
        let running = try other.list(status: .running, limit: 10, offset: 0)
        XCTAssertEqual(running.records.map(\.id), [jobs[0].id])
        XCTAssertEqual(running.total, 1)
        XCTAssertEqual(try other.list(status: .queued, limit: 10, offset: 0).total, 4)
        XCTAssertEqual(try other.list(status: .succeeded, limit: 10, offset: 0).total, 0)

        XCTAssertThrowsJobError(.notFound(JobID("00000000000000aa")!)) { () throws(JobError) in
            try other.fetch(JobID("00000000000000aa")!)
        }
        XCTAssertNil(try other.queuePosition(of: JobID("00000000000000aa")!))
    }

    /// A submit answers the job's queue position and the cluster's queued count from its own
    /// transaction, the same figures `queuePosition(of:)` and `queuedCount()` read afterwards.
    func testSubmitAnswersItsQueuePositionAndTheQueuedCount() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let submitted = [try a.submit(queuedRecord(seed: 1), maxQueued: 10),
                         try b.submit(queuedRecord(key: "k", seed: 2), maxQueued: 10),
                         try a.submit(queuedRecord(seed: 3), maxQueued: 10)]
        XCTAssertEqual(submitted.map(\.queuePosition), [1, 2, 3])
        XCTAssertEqual(submitted.map(\.queuedCount), [1, 2, 3])
        XCTAssertEqual(try submitted.map { try b.queuePosition(of: $0.record.id) }, [1, 2, 3])

        // A replay answers the existing job's place; a claim moves the queue up.
        let replay = try a.submit(queuedRecord(key: "k", seed: 2), maxQueued: 10)
        XCTAssertTrue(replay.replayed)
        XCTAssertEqual([replay.queuePosition, replay.queuedCount], [2, 3])
        XCTAssertEqual(try b.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).map(\.id), [submitted[0].record.id])
        let fourth = try b.submit(queuedRecord(seed: 4), maxQueued: 10)
        XCTAssertEqual([fourth.queuePosition, fourth.queuedCount], [3, 3])
        let again = try b.submit(queuedRecord(key: "k", seed: 2), maxQueued: 10)
        XCTAssertEqual([again.queuePosition, again.queuedCount], [1, 3])

        // A replay of a job that left the queue has no position.
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).map(\.id), [submitted[1].record.id])
        let running = try a.submit(queuedRecord(key: "k", seed: 2), maxQueued: 10)
        XCTAssertTrue(running.replayed)
        XCTAssertNil(running.queuePosition)
        XCTAssertEqual(running.queuedCount, 2)
    }

    func testQueueBoundHoldsOverTheCluster() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        _ = try a.submit(queuedRecord(), maxQueued: 3)
        _ = try b.submit(queuedRecord(), maxQueued: 3)
        _ = try a.submit(queuedRecord(), maxQueued: 3)
        XCTAssertThrowsJobError(.queueFull(retryAfter: 0)) { () throws(JobError) in
            try b.submit(queuedRecord(), maxQueued: 3)
        }
        // Running jobs do not count: a claim makes room.
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).count, 1)
        _ = try b.submit(queuedRecord(), maxQueued: 3)
        XCTAssertEqual(try a.queuedCount(), 3)

        // Many submissions at once from both boxes: exactly the free places are taken, round
        // after round (a race between counting and inserting shows in some round).
        let stores = [a, b]
        for round in 0..<12 {
            try sql("DELETE FROM rind_jobs WHERE status = 'queued'")
            let outcomes = onThreads(8) { index -> String in
                do {
                    _ = try stores[index % 2].submit(self.queuedRecord(), maxQueued: 5)
                    return "queued"
                } catch {
                    return "\(error)"
                }
            }
            XCTAssertEqual(outcomes.filter { $0 == "queued" }.count, 5, "round \(round): \(outcomes)")
            XCTAssertEqual(outcomes.filter { $0 == "\(JobError.queueFull(retryAfter: 0))" }.count, 3, "\(outcomes)")
            XCTAssertEqual(try b.queuedCount(), 5)
        }
    }

    func testIdempotencyKeysAreUniqueAcrossBoxes() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let stores = [a, b]
        let results = onThreads(6) { index -> Submitted? in
            let record = self.queuedRecord(key: "same-request")
            return (try? stores[index % 2].submit(record, maxQueued: 100)).map { Submitted(id: $0.record.id, replayed: $0.replayed) }
        }
        XCTAssertTrue(results.allSatisfy { $0 != nil }, "every submission answered")
        let answers = results.compactMap { $0 }
        XCTAssertEqual(Set(answers.map(\.id)).count, 1, "one job for one key: \(answers)")
        XCTAssertEqual(answers.filter { !$0.replayed }.count, 1, "one submission inserted, the others replayed")
        XCTAssertEqual(try a.queuedCount(), 1)
        XCTAssertEqual(try sql("SELECT count(*)::text FROM rind_jobs"), [["1"]])

        // A deleted job frees its key.
        let first = answers[0].id
        try b.delete(first)
        let again = try a.submit(queuedRecord(key: "same-request"), maxQueued: 100)
        XCTAssertFalse(again.replayed)
        XCTAssertNotEqual(again.record.id, first)
        // A replay is answered even when the queue is full.
        let replay = try b.submit(queuedRecord(key: "same-request"), maxQueued: 0)
        XCTAssertTrue(replay.replayed)
        XCTAssertEqual(replay.record, try a.fetch(again.record.id))
    }

    func testConcurrentClaimsNeverShareAJob() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let jobs = try submitJobs(a, count: 30)
        let stores = [a, b]
        let claims = onThreads(6) { index -> [JobID] in
            var mine: [JobID] = []
            while true {
                guard let batch = try? stores[index % 2].claim(models: ["cifar10"], limit: 2, lease: .seconds(60)) else {
                    return mine + [JobID("ffffffffffffffff")!]  // an error: fails the count below
                }
                if batch.isEmpty { return mine }
                mine += batch.map(\.id)
            }
        }
        let all = claims.flatMap { $0 }
        XCTAssertEqual(all.count, 30, "every job claimed once")
        XCTAssertEqual(Set(all), Set(jobs.map(\.id)))
        // Each job is held by the box whose thread claimed it.
        for (index, ids) in claims.enumerated() {
            let owner = stores[index % 2].owner
            for id in ids {
                XCTAssertEqual(try sql("SELECT owner FROM rind_jobs WHERE id = '\(id)'"), [[owner]])
            }
        }
        XCTAssertEqual(try a.queuedCount(), 0)
    }

    func testClaimTakesOnlyItsModelsAndSetsTheRun() throws {
        let a = try makeStore(box: "a")
        let cifar = try a.submit(queuedRecord(model: "cifar10"), maxQueued: 10).record
        let imagenet = try a.submit(queuedRecord(model: "imagenet64"), maxQueued: 10).record
        XCTAssertEqual(try a.claim(models: ["other"], limit: 5, lease: .seconds(60)), [])
        XCTAssertEqual(try a.claim(models: [], limit: 5, lease: .seconds(60)), [])
        let claimed = try a.claim(models: ["imagenet64"], limit: 5, lease: .seconds(60))
        XCTAssertEqual(claimed.map(\.id), [imagenet.id])
        let run = try XCTUnwrap(claimed.first)
        XCTAssertEqual(run.status, .running)
        XCTAssertEqual(run.attempts, 1)
        XCTAssertEqual(run.revision, imagenet.revision + 1)
        XCTAssertEqual(run.progress, JobProgress(step: 0, steps: imagenet.progress.steps))
        XCTAssertNotNil(run.startedAt)
        XCTAssertEqual(run.parameters, imagenet.parameters, "runs again from its recorded seed")
        XCTAssertEqual(try a.fetch(imagenet.id), run)
        let lease = try sql("SELECT owner, (lease_until > now() + interval '50 seconds')::text FROM rind_jobs WHERE id = '\(imagenet.id)'")
        XCTAssertEqual(lease, [[a.owner, "true"]])
        XCTAssertEqual(try a.fetch(cifar.id).status, .queued)
    }

    func testOwnersAreUniquePerStart() throws {
        let first = try makeStore(box: "render-1")
        let second = try makeStore(box: "render-1")
        for owner in [first.owner, second.owner] {
            XCTAssertTrue(owner.hasPrefix("render-1-"), owner)
            XCTAssertEqual(owner.count, "render-1-".count + 8, owner)
        }
        XCTAssertNotEqual(first.owner, second.owner, "two starts of one box are two holders")
        let job = try first.submit(queuedRecord(), maxQueued: 10).record
        XCTAssertEqual(try first.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).count, 1)
        var run = try first.fetch(job.id)
        run.revision += 1
        XCTAssertThrowsJobError(.leaseLost(job.id)) { () throws(JobError) in try second.write(run) }
    }

    func testCancelQueuedRunningAndFinished() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let queued = try a.submit(queuedRecord(), maxQueued: 10).record
        let canceled = try b.requestCancel(queued.id)
        XCTAssertEqual(canceled.status, .canceled)
        XCTAssertTrue(canceled.cancelRequested)
        XCTAssertNotNil(canceled.finishedAt)
        XCTAssertEqual(canceled.revision, queued.revision + 1)
        XCTAssertEqual(try a.fetch(queued.id), canceled)
        XCTAssertNil(try a.queuePosition(of: queued.id))
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 5, lease: .seconds(60)), [], "a canceled job is not claimed")

        // Running on box a, canceled from box b: marked, and a's next write keeps the mark.
        let job = try a.submit(queuedRecord(), maxQueued: 10).record
        var run = try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).first)
        let marked = try b.requestCancel(job.id)
        XCTAssertEqual(marked.status, .running)
        XCTAssertTrue(marked.cancelRequested)
        XCTAssertEqual(marked.revision, run.revision + 1)
        XCTAssertEqual(try a.renew([job.id], lease: .seconds(60)), [job.id: .held(cancelRequested: true)])
        run.progress.step = 3
        run.revision += 1  // box a's own next revision, which b's cancel already used
        try a.write(run)
        let afterWrite = try b.fetch(job.id)
        XCTAssertTrue(afterWrite.cancelRequested, "a write of the box running the job keeps a cancel mark")
        XCTAssertEqual(afterWrite.progress.step, 3)
        XCTAssertGreaterThan(afterWrite.revision, marked.revision, "revisions only grow")
        XCTAssertEqual(try b.requestCancel(job.id), afterWrite, "asking twice changes nothing")

        // The box stops the run and records the end; a cancel of a finished job changes nothing.
        var end = afterWrite
        end.status = .canceled
        end.finishedAt = Date()
        end.revision += 1
        try a.write(end)
        let finished = try b.fetch(job.id)
        XCTAssertEqual(finished.status, .canceled)
        XCTAssertEqual(try b.requestCancel(job.id), finished)
        XCTAssertEqual(try sql("SELECT (lease_until IS NULL)::text FROM rind_jobs WHERE id = '\(job.id)'"), [["true"]])

        XCTAssertThrowsJobError(.notFound(JobID("00000000000000ab")!)) { () throws(JobError) in
            try b.requestCancel(JobID("00000000000000ab")!)
        }
    }
}
