import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import RINModel
import RINTestSupport
import XCTest

/// Records every `beforeStep` call in order (which shows which jobs shared each batched step) and
/// holds the scheduler at the first call that matches the current rule until `release()`.
final class BatchLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var calls: [(JobID, Int)] = []
    private var rule: ((JobID, Int) -> Bool)?
    private var held: (JobID, Int)?

    var hook: @Sendable (JobID, Int) -> Void { { [self] job, stepsDone in record(job, stepsDone) } }

    /// Holds at the next call for which `rule` is true (once; `release` replaces it).
    func hold(when rule: @escaping (JobID, Int) -> Bool) {
        condition.withLock { self.rule = rule }
    }

    func waitUntilHeld(file: StaticString = #filePath, line: UInt = #line) {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: 300)
        while held == nil {
            if !condition.wait(until: deadline) { return XCTFail("nothing reached the hold", file: file, line: line) }
        }
    }

    /// Lets the held call go on; `next` becomes the rule for the next hold (nil: none).
    func release(thenHoldWhen next: ((JobID, Int) -> Bool)? = nil) {
        condition.withLock {
            rule = next
            held = nil
            condition.broadcast()
        }
    }

    /// The calls so far, as (job, steps done), in order.
    var log: [(JobID, Int)] { condition.withLock { calls } }

    /// The calls in order, each job named by its index in `jobs`: "A0 A1 B0 ...".
    func transcript(_ jobs: [JobID]) -> String {
        log.map { call in "\(Character(UnicodeScalar(65 + (jobs.firstIndex(of: call.0) ?? 25))!))\(call.1)" }
            .joined(separator: " ")
    }

    private func record(_ job: JobID, _ stepsDone: Int) {
        condition.lock()
        defer { condition.unlock() }
        calls.append((job, stepsDone))
        guard held == nil, let rule, rule(job, stepsDone) else { return }
        held = (job, stepsDone)
        condition.broadcast()
        while held != nil { condition.wait() }
    }
}

/// Asserts that a finished job's images are those of its run alone (`directImages`), to within
/// `SamplingBatch.maxPixelDifference` (the matrix libraries' summation order depends on the batch).
func assertSoloImages(_ service: JobService, _ job: JobSnapshot, file: StaticString = #filePath, line: UInt = #line) throws {
    let batched = try serviceImages(service, try service.job(job.id)), solo = try directImages(job.parameters)
    XCTAssertEqual(batched.count, solo.count, file: file, line: line)
    for (a, b) in zip(batched, solo) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let header = a.firstIndex(of: 0x0A) ?? 0
        XCTAssertEqual(a.prefix(header), b.prefix(header), "geometry", file: file, line: line)
        let difference = zip(a.dropFirst(header + 1), b.dropFirst(header + 1)).map { abs(Int($0) - Int($1)) }.max() ?? 0
        print("batching identity [job \(job.id), \(job.parameters.sampler), guidance \(job.parameters.guidance)]: max pixel difference \(difference)")
        XCTAssertLessThanOrEqual(difference, SamplingBatch.maxPixelDifference, "job \(job.parameters)", file: file, line: line)
    }
}

/// Cross-job batching in the service: running jobs of one model advance together, one batched
/// network pass per step, and each job's images are those of the same job run alone.
final class BatchingTests: XCTestCase {
    /// Four jobs that differ in class, seed, steps, sampler, schedule, guidance, count and carry:
    /// 1 + 4 + 1 + 2 = 8 network rows, one batch at the default `maxBatchRows`.
    let mixed: [JobRequest] = [
        JobRequest(classIndex: 0, seed: 11, steps: 4, guidance: 0),
        JobRequest(classIndex: 2, seed: 12, steps: 6, sampler: .ddpm, guidance: 2, count: 2),
        JobRequest(seed: 13, steps: 5, schedule: .sigmoid, carryLatents: false, unconditional: true),
        JobRequest(classIndex: 1, seed: 14, steps: 3, sampler: .ddpm, schedule: .linear, guidance: 1.5),
    ]

    /// Submits `requests`, the first held before its first step until the rest are queued, so the
    /// rest join its batch at its second step. With `thenHold` (job index, steps done) the log
    /// holds there next. Returns the jobs in order.
    func submitTogether(_ service: JobService, _ log: BatchLog, _ requests: [JobRequest],
                        thenHold: (index: Int, stepsDone: Int)? = nil) throws -> [JobSnapshot] {
        log.hold { _, stepsDone in stepsDone == 0 }
        let first = try service.submit(requests[0]).job
        log.waitUntilHeld()
        let jobs = [first] + (try requests.dropFirst().map { try service.submit($0).job })
        XCTAssertTrue(jobs.dropFirst().allSatisfy { $0.status == .queued })
        if let hold = thenHold {
            let id = jobs[hold.index].id, step = hold.stepsDone
            log.release { job, stepsDone in job == id && stepsDone == step }
        } else {
            log.release()
        }
        return jobs
    }

    func testJobsInOneBatchMakeTheImagesTheyMakeAlone() throws {
        let log = BatchLog()
        let service = try makeService(self, state: try makeStateDirectory(self), workers: 4, beforeStep: log.hook)
        let jobs = try submitTogether(service, log, mixed)
        for job in jobs {
            XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
            try assertSoloImages(service, job)
        }
        // A alone, then all four in every step until each is done: one batched pass per step.
        XCTAssertEqual(log.transcript(jobs.map(\.id)),
                       "A0 A1 B0 C0 D0 A2 B1 C1 D1 A3 B2 C2 D2 B3 C3 B4 C4 B5")
    }

    func testJobsJoinAndLeaveTheBatchMidRun() throws {
        let log = BatchLog()
        let service = try makeService(self, state: try makeStateDirectory(self), workers: 4, beforeStep: log.hook)
        log.hold { _, stepsDone in stepsDone == 2 }
        let long = try service.submit(JobRequest(classIndex: 1, seed: 21, steps: 6, guidance: 1)).job
        log.waitUntilHeld()
        let short = try service.submit(JobRequest(classIndex: 2, seed: 22, steps: 2)).job
        log.release()
        XCTAssertEqual(try waitForEnd(service, short.id).kind, .succeeded)
        XCTAssertEqual(try waitForEnd(service, long.id).kind, .succeeded)
        // The short job joins at the long one's fourth step and leaves two steps later.
        XCTAssertEqual(log.transcript([long.id, short.id]), "A0 A1 A2 A3 B0 A4 B1 A5")
        for job in [long, short] {
            try assertSoloImages(service, job)
        }
    }

    func testCancelInsideABatchStopsOnlyThatJob() throws {
        let log = BatchLog()
        let service = try makeService(self, state: try makeStateDirectory(self), workers: 4, beforeStep: log.hook)
        let jobs = try submitTogether(service, log, Array(mixed.prefix(3)), thenHold: (1, 2))
        let victim = jobs[1]
        log.waitUntilHeld()
        XCTAssertTrue(try service.cancel(victim.id).cancelRequested)
        log.release()
        let end = try waitForEnd(service, victim.id)
        XCTAssertEqual(end.kind, .canceled)
        XCTAssertEqual(end.job.progress.step, 2, "stopped before its next step")
        for job in [jobs[0], jobs[2]] {
            XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
            try assertSoloImages(service, job)
        }
    }

    func testABatchInFlightAtADrainRunsAgainAfterARestartToTheSameImages() throws {
        let state = try makeStateDirectory(self)
        let log = BatchLog()
        let service = try makeService(self, state: state, workers: 4, beforeStep: log.hook)
        let jobs = try submitTogether(service, log, mixed, thenHold: (0, 2))
        log.waitUntilHeld()
        XCTAssertEqual(service.runningCount, 4, "the whole batch is running")
        let drained = onThread { service.drain(deadline: .zero) }
        try waitUntil("the drain began") { service.isDraining }
        log.release()
        XCTAssertEqual(drained.wait(timeout: .now() + 120), .success)
        for job in jobs {
            XCTAssertEqual(try service.job(job.id).status, .queued, "requeued on disk, not lost")
        }
        let restarted = try makeService(self, state: state, workers: 4)
        for job in jobs {
            XCTAssertEqual(try waitForEnd(restarted, job.id).kind, .succeeded)
            XCTAssertEqual(try restarted.job(job.id).attempts, 2)
            try assertSoloImages(restarted, job)
        }
    }

    func testRowsBeyondTheBatchLimitWaitForRoom() throws {
        let log = BatchLog()
        var configuration = JobService.Configuration(stateDirectory: try makeStateDirectory(self), workers: 4,
                                                     previewEvery: 0)
        configuration.maxBatchRows = 3
        configuration.beforeStep = log.hook
        let service = try JobService(configuration: configuration, models: [Fixtures.tiny], encoder: RawEncoder())
        addTeardownBlock { service.drain(deadline: .zero) }
        // 2 rows, then 2 more (does not fit in 3: waits), then 1 (unguided: one row per image).
        let jobs = try submitTogether(service, log, [
            JobRequest(classIndex: 0, seed: 31, steps: 2, guidance: 0, count: 2),
            JobRequest(classIndex: 1, seed: 32, steps: 2, guidance: 0, count: 2),
            JobRequest(classIndex: 2, seed: 33, steps: 2, guidance: 0),
        ])
        for job in jobs { XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded) }
        // FIFO: the third job waits behind the second, which waits for room.
        XCTAssertEqual(log.transcript(jobs.map(\.id)), "A0 A1 B0 C0 B1 C1")
        for job in jobs {
            try assertSoloImages(service, job)
        }
    }
}
