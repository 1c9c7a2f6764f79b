import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import RINModel
import RINTestSupport
import XCTest

/// Restarts: the state directory is the only thing that survives, so these tests build a second
/// service on the first one's directory (after a drain) or on a copy taken mid-run (a crash).
final class RecoveryTests: XCTestCase {
    func testInterruptedAndQueuedJobsRerunToTheSameImages() throws {
        let encoder = RawEncoder(gated: true)
        let state = try makeStateDirectory(self)
        let first = try makeService(self, state: state, encoder: encoder)
        let running = try first.submit(JobRequest(classIndex: 0, count: 2, previewEvery: 1)).job
        encoder.waitUntilEntered(1)   // pinned after step 1 of 4
        let queued = try (0..<2).map { index in
            try first.submit(JobRequest(classIndex: index + 1, steps: 3 + index)).job
        }
        XCTAssertEqual(try first.job(running.id).status, .running)

        // A crash now: copy the state directory as it is on disk while the job runs.
        let crashed = try makeStateDirectory(self)
        try FileManager.default.removeItem(at: crashed)
        try FileManager.default.copyItem(at: state, to: crashed)

        // A drain with no time left: the running job stops after its current step, on disk as queued.
        let drained = onThread { first.drain(deadline: .zero) }
        try waitUntil("the drain began") { !first.isAccepting }
        encoder.open()
        XCTAssertEqual(drained.wait(timeout: .now() + 120), .success)
        let interrupted = try first.job(running.id)
        XCTAssertEqual(interrupted.status, .queued)
        XCTAssertEqual(interrupted.progress.step, 0)
        for job in queued { XCTAssertEqual(try first.job(job.id).status, .queued) }

        for directory in [state, crashed] {
            let second = try makeService(self, state: directory)
            let all = [running] + queued
            for job in all {
                XCTAssertEqual(try waitForEnd(second, job.id).kind, .succeeded)
                let done = try second.job(job.id)
                XCTAssertEqual(done.parameters, job.parameters, "the recorded seed and parameters")
                XCTAssertEqual(try serviceImages(second, done), try directImages(job.parameters),
                               "same images as an uninterrupted run")
            }
            // One worker runs them one after the other: in creation order.
            let starts = try all.map { try XCTUnwrap(try second.job($0.id).startedAt) }
            XCTAssertEqual(starts, starts.sorted(), "re-queued in creation order")
            XCTAssertEqual(try second.job(running.id).attempts, 2)
            XCTAssertEqual(try second.job(queued[0].id).attempts, 1)
            second.drain(deadline: .zero)
        }
    }

    func testFinishedJobsAreServedAgainAfterARestart() throws {
        let state = try makeStateDirectory(self)
        let first = try makeService(self, state: state, previewEvery: 1)
        let job = try first.submit(JobRequest(seed: 77, count: 2)).job
        try waitForEnd(first, job.id)
        let images = try serviceImages(first, try first.job(job.id))
        let preview = try first.preview(job.id)
        let canceled = try first.submit(JobRequest(seed: 78)).job
        _ = try first.cancel(canceled.id)
        try waitForEnd(first, canceled.id)
        first.drain(deadline: .zero)

        let second = try makeService(self, state: state)
        let again = try second.job(job.id)
        XCTAssertEqual(again.status, .succeeded)
        XCTAssertEqual(again.attempts, 1, "not run again")
        XCTAssertEqual(try serviceImages(second, again), images)
        XCTAssertEqual(try second.preview(job.id), preview, "the preview is read back from disk")
        let event = try waitForEnd(second, job.id)
        XCTAssertEqual(event.kind, .succeeded)
        XCTAssertEqual(try second.job(canceled.id).status, .canceled)
    }

    func testCancelRequestedBeforeACrashIsHonouredAtStart() throws {
        let encoder = RawEncoder(gated: true)
        let state = try makeStateDirectory(self)
        let first = try makeService(self, state: state, encoder: encoder)
        let job = try first.submit(JobRequest(seed: 5, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        _ = try first.cancel(job.id)
        let crashed = try makeStateDirectory(self)
        try FileManager.default.removeItem(at: crashed)
        try FileManager.default.copyItem(at: state, to: crashed)
        encoder.open()
        let second = try makeService(self, state: crashed)
        XCTAssertEqual(try second.job(job.id).status, .canceled)
        XCTAssertEqual(second.queueDepth, 0)
    }

    func testCorruptRecordsAreMovedAsideAndSkipped() throws {
        let state = try makeStateDirectory(self)
        let first = try makeService(self, state: state)
        let good = try first.submit(JobRequest(seed: 1)).job
        try waitForEnd(first, good.id)
        first.drain(deadline: .zero)

        let jobs = state.appendingPathComponent("jobs")
        let garbage = JobID("00000000000000aa")!
        let halfWritten = JobID("00000000000000bb")!
        let noRecord = JobID("00000000000000cc")!
        let record = try Data(contentsOf: jobs.appendingPathComponent("\(good.id)/job.json"))
        for (id, data) in [(garbage, Data("not json at all".utf8)), (halfWritten, record.prefix(record.count / 2))] {
            try FileManager.default.createDirectory(at: jobs.appendingPathComponent("\(id)"), withIntermediateDirectories: true)
            try data.write(to: jobs.appendingPathComponent("\(id)/job.json"))
        }
        try FileManager.default.createDirectory(at: jobs.appendingPathComponent("\(noRecord)"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: jobs.appendingPathComponent("not-a-job"), withIntermediateDirectories: true)
        // A record whose id does not match its directory is also refused.
        let moved = JobID("00000000000000dd")!
        try FileManager.default.createDirectory(at: jobs.appendingPathComponent("\(moved)"), withIntermediateDirectories: true)
        try record.write(to: jobs.appendingPathComponent("\(moved)/job.json"))
        try Data("[{]".utf8).write(to: state.appendingPathComponent("tombstones.json"))

        let second = try makeService(self, state: state)
        XCTAssertEqual(try second.job(good.id).status, .succeeded)
        for id in [garbage, halfWritten, moved] {
            assertJobError(.notFound(id)) { _ = try second.job(id) }
            XCTAssertTrue(FileManager.default.fileExists(atPath: jobs.appendingPathComponent("\(id)/job.json.corrupt").path))
            XCTAssertFalse(FileManager.default.fileExists(atPath: jobs.appendingPathComponent("\(id)/job.json").path))
        }
        assertJobError(.notFound(noRecord)) { _ = try second.job(noRecord) }
        XCTAssertEqual(second.list().total, 1)
        XCTAssertEqual(try waitForEnd(second, try second.submit(JobRequest(seed: 2)).job.id).kind, .succeeded)
    }

    func testQueuedJobsOfAModelNoLongerLoadedFailAtStart() throws {
        let encoder = RawEncoder(gated: true)
        let state = try makeStateDirectory(self)
        let first = try makeService(self, state: state, encoder: encoder)
        let running = try first.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let queued = try first.submit(JobRequest(seed: 2)).job
        let drained = onThread { first.drain(deadline: .zero) }
        try waitUntil("the drain began") { !first.isAccepting }
        encoder.open()
        XCTAssertEqual(drained.wait(timeout: .now() + 120), .success)
        // Rename the model in the queued job's record, as if the daemon restarted without it.
        let file = state.appendingPathComponent("jobs/\(queued.id)/job.json")
        let text = try String(contentsOf: file, encoding: .utf8)
        XCTAssertTrue(text.contains("\"model\" : \"tiny\""), text)
        try text.replacingOccurrences(of: "\"model\" : \"tiny\"", with: "\"model\" : \"retired\"")
            .write(to: file, atomically: true, encoding: .utf8)

        let second = try makeService(self, state: state)
        let failed = try second.job(queued.id)
        XCTAssertEqual(failed.status, .failed)
        XCTAssertEqual(failed.error, "model 'retired' is not loaded")
        XCTAssertEqual(try waitForEnd(second, running.id).kind, .succeeded)
    }

    func testUnwritableStateDirectoryIsAStorageError() throws {
        let file = try makeStateDirectory(self).appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try JobService(
            configuration: .init(stateDirectory: file), models: [Fixtures.tiny], encoder: RawEncoder())) { error in
            guard case .storage = error as? JobError else { return XCTFail("\(error)") }
        }
    }
}

final class WorkerPlanTests: XCTestCase {
    func testDefaultsUseEveryCoreForTheMatrixLibraryAndBatchSlotsForJobs() {
        for cores in 1...64 {
            let plan = WorkerPlan.automatic(cores: cores)
            XCTAssertEqual(plan.matrixThreads, cores, "\(cores) cores: one batched step uses them all")
            XCTAssertEqual(plan.workers, WorkerPlan.defaultWorkers)
        }
        XCTAssertEqual(WorkerPlan.automatic(cores: 8, workers: 2), WorkerPlan(workers: 2, matrixThreads: 8))
        XCTAssertEqual(WorkerPlan.automatic(cores: 8, blasThreads: 2), WorkerPlan(workers: WorkerPlan.defaultWorkers, matrixThreads: 2))
        XCTAssertEqual(WorkerPlan.automatic(cores: 2, workers: 4, blasThreads: 4),
                       WorkerPlan(workers: 4, matrixThreads: 4), "the operator's explicit choice")
        XCTAssertEqual(WorkerPlan(workers: 0, matrixThreads: 0), WorkerPlan(workers: 1, matrixThreads: 1))
    }
}

final class JobIDTests: XCTestCase {
    func testOnlySixteenLowercaseHexCharactersAreIDs() {
        XCTAssertNotNil(JobID("0123456789abcdef"))
        XCTAssertNil(JobID("0123456789ABCDEF"))
        XCTAssertNil(JobID("../../etc/passwd"))
        XCTAssertNil(JobID("0123456789abcde"))
        XCTAssertNil(JobID(""))
        let ids = Set((0..<100).map { _ in JobID.random() })
        XCTAssertEqual(ids.count, 100)
        XCTAssertTrue(ids.allSatisfy { JobID($0.rawValue) == $0 })
    }
}
