import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import RINModel
import RINTestSupport
import XCTest

final class JobServiceTests: XCTestCase {
    func testSubmitRunsToSuccessWithTheEngineImages() throws {
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state)
        let submission = try service.submit(JobRequest(classIndex: 2, seed: 1234, count: 2))
        XCTAssertFalse(submission.replayed)
        let queued = submission.job
        XCTAssertEqual(queued.model, "tiny")
        XCTAssertEqual(queued.parameters.seed, 1234)
        XCTAssertEqual(queued.parameters.steps, 4, "the checkpoint's default")
        XCTAssertEqual(queued.parameters.classIndex, 2)
        // Durable before submit returned.
        let record = state.appendingPathComponent("jobs/\(queued.id)/job.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: record.path))

        let end = try waitForEnd(service, queued.id)
        XCTAssertEqual(end.kind, .succeeded)
        let job = try service.job(queued.id)
        XCTAssertEqual(job.status, .succeeded)
        XCTAssertEqual(job.imageCount, 2)
        XCTAssertEqual(job.progress.step, 4)
        XCTAssertEqual(job.progress.fraction, 1)
        XCTAssertNotNil(job.startedAt)
        XCTAssertNotNil(job.finishedAt)
        XCTAssertGreaterThan(job.revision, queued.revision)
        XCTAssertEqual(job.attempts, 1)
        XCTAssertEqual(try serviceImages(service, job), try directImages(job.parameters))
        XCTAssertTrue(FileManager.default.fileExists(
            atPath: state.appendingPathComponent("jobs/\(job.id)/image-1.raw").path))
        assertJobError(.imageIndexOutOfRange(job.id, index: 2, count: 2)) { _ = try service.image(job.id, index: 2) }
        // After success the preview is the final result.
        XCTAssertEqual(try service.preview(job.id).step, 4)
    }

    func testRandomSeedIsResolvedAndReproduces() throws {
        let service = try makeService(self, state: try makeStateDirectory(self))
        let job = try service.submit(JobRequest()).job
        XCTAssertLessThanOrEqual(job.parameters.seed, SamplingParameters.maxSeed)
        XCTAssertNil(job.request.seed, "the request is kept as sent")
        try waitForEnd(service, job.id)
        XCTAssertEqual(try serviceImages(service, try service.job(job.id)), try directImages(job.parameters))
    }

    func testInvalidRequestsAreRefusedWithTheParameter() throws {
        let service = try makeService(self, state: try makeStateDirectory(self))
        XCTAssertThrowsError(try service.submit(JobRequest(classIndex: 3))) { error in
            guard case let .invalidParameter(name, message) = error as? JobError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "class")
            XCTAssertTrue(message.contains("0...2"), message)
        }
        XCTAssertThrowsError(try service.submit(JobRequest(steps: 0))) { error in
            guard case .invalidParameter(name: "steps", message: _) = error as? JobError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try service.submit(JobRequest(previewEvery: -1))) { error in
            guard case .invalidParameter(name: "preview_every", message: _) = error as? JobError else {
                return XCTFail("\(error)")
            }
        }
        assertJobError(.unknownModel("nope", available: ["tiny"])) { _ = try service.submit(JobRequest(model: "nope")) }
        XCTAssertEqual(service.list().total, 0, "nothing was queued")
    }

    func testPreviewsArriveInOrderThenTheFinalEvent() throws {
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        // A blocker holds the only worker, so the watched job is still queued when subscribed.
        let blocker = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let job = try service.submit(JobRequest(seed: 2, previewEvery: 1)).job
        XCTAssertEqual(job.queuePosition, 1)
        assertJobError(.noPreview(job.id)) { _ = try service.preview(job.id) }
        let subscription = try service.subscribe(job.id)
        encoder.open()
        var events: [JobEvent] = []
        while let event = subscription.next(timeout: .seconds(120)) {
            events.append(event)
            if event.isTerminal { break }
        }
        XCTAssertTrue(subscription.isFinished)
        XCTAssertNil(subscription.next(timeout: .zero))
        let kinds = events.map { "\($0.kind.rawValue)\($0.kind == .snapshot ? "" : String($0.job.progress.step))" }
        XCTAssertEqual(kinds, ["snapshot", "progress0", "progress1", "preview1", "progress2", "preview2",
                               "progress3", "preview3", "progress4", "succeeded4"])
        XCTAssertEqual(events[0].job.status, .queued)
        XCTAssertEqual(events[1].job.status, .running)
        let previews = events.filter { $0.kind == .preview }
        XCTAssertEqual(previews.map { $0.preview?.step }, [1, 2, 3])
        XCTAssertEqual(events.map(\.job.revision), events.map(\.job.revision).sorted(), "revisions only grow")
        // The preview is the x0 estimate after that step: check the last one against the engine.
        let run = try SamplingRun(checkpoint: Fixtures.tiny, parameters: job.parameters)
        for _ in 0..<3 { run.step() }
        XCTAssertEqual(previews.last?.preview?.data, RawEncoder.bytes(run.estimate()[0]))
        XCTAssertNotNil(events.last?.preview, "the final event carries the final picture")
        XCTAssertEqual(events[5].job.progress.secondsPerStep.map { $0 >= 0 }, true)
        try waitForEnd(service, blocker.id)
    }

    func testSlowSubscriberLosesIntermediateEventsButGetsTheEnd() throws {
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        let blocker = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let job = try service.submit(JobRequest(seed: 2, steps: 8, previewEvery: 1)).job
        let subscription = try service.subscribe(job.id, capacity: 2)
        encoder.open()
        try waitForEnd(service, job.id)
        var kinds: [JobEvent.Kind] = []
        while let event = subscription.next(timeout: .seconds(1)) { kinds.append(event.kind) }
        XCTAssertEqual(kinds.first, .snapshot)
        XCTAssertEqual(kinds.last, .succeeded)
        XCTAssertLessThanOrEqual(kinds.count, 3)
        XCTAssertGreaterThan(subscription.droppedEvents, 0)
        try waitForEnd(service, blocker.id)
    }

    func testAsyncSubscriptionEndsWithTheFinalEvent() async throws {
        let service = try makeService(self, state: try makeStateDirectory(self))
        let job = try service.submit(JobRequest(seed: 5, previewEvery: 2)).job
        var last: JobEvent?
        for await event in try service.subscribe(job.id) { last = event }
        XCTAssertEqual(last?.kind, .succeeded)
        XCTAssertEqual(last?.job.id, job.id)
    }

    func testCancelWhileQueuedIsImmediateAndIdempotent() throws {
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        let blocker = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let job = try service.submit(JobRequest(seed: 2)).job
        let canceled = try service.cancel(job.id)
        XCTAssertEqual(canceled.status, .canceled)
        XCTAssertNil(canceled.queuePosition)
        XCTAssertEqual(service.queueDepth, 0)
        XCTAssertEqual(try service.cancel(job.id), canceled, "a second cancel changes nothing")
        assertJobError(.noResult(job.id, status: .canceled)) { _ = try service.image(job.id) }
        encoder.open()
        XCTAssertEqual(try waitForEnd(service, blocker.id).kind, .succeeded)
        XCTAssertEqual(try service.job(job.id).status, .canceled, "never ran")
        XCTAssertEqual(try service.job(job.id).attempts, 0)
    }

    func testCancelWhileRunningStopsAfterTheCurrentStep() throws {
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        let job = try service.submit(JobRequest(seed: 3, previewEvery: 1)).job
        encoder.waitUntilEntered(1)   // pinned after step 1
        let subscription = try service.subscribe(job.id)
        let asked = try service.cancel(job.id)
        XCTAssertEqual(asked.status, .running)
        XCTAssertTrue(asked.cancelRequested)
        XCTAssertThrowsError(try service.image(job.id)) { error in
            guard case let .notFinished(id, status, retryAfter) = error as? JobError else { return XCTFail("\(error)") }
            XCTAssertEqual(id, job.id)
            XCTAssertEqual(status, .running)
            XCTAssertGreaterThanOrEqual(retryAfter, 1)
        }
        encoder.open()
        var kinds: [JobEvent.Kind] = []
        while let event = subscription.next(timeout: .seconds(120)) { kinds.append(event.kind) }
        XCTAssertEqual(kinds.last, .canceled)
        XCTAssertFalse(kinds.contains(.succeeded))
        let finished = try service.job(job.id)
        XCTAssertEqual(finished.status, .canceled)
        XCTAssertEqual(finished.progress.step, 1)
        XCTAssertEqual(try service.cancel(job.id).status, .canceled)
        assertJobError(.noResult(job.id, status: .canceled)) { _ = try service.image(job.id) }
    }

    func testBeforeStepHookHoldsTheJobUntilItReturns() throws {
        let recorder = StepGate<JobID>(holdAt: 2)
        let service = try makeService(self, state: try makeStateDirectory(self), beforeStep: recorder.hook)
        let held = try service.submit(JobRequest(seed: 21)).job
        XCTAssertEqual(recorder.waitUntilHeld(), held.id)
        // Held before its third step: running at step 2, and the next job waits behind it.
        let running = try service.job(held.id)
        XCTAssertEqual(running.status, .running)
        XCTAssertEqual(running.progress.step, 2)
        let next = try service.submit(JobRequest(seed: 22)).job
        XCTAssertEqual(next.queuePosition, 1)
        XCTAssertTrue(try service.cancel(held.id).cancelRequested)
        XCTAssertEqual(try service.job(held.id).status, .running, "the cancel waits for the hook")
        recorder.open()
        // The cancel is seen right after the hook returns: no further step.
        let canceled = try waitForEnd(service, held.id)
        XCTAssertEqual(canceled.kind, .canceled)
        XCTAssertEqual(canceled.job.progress.step, 2)
        XCTAssertEqual(try waitForEnd(service, next.id).kind, .succeeded)
        XCTAssertEqual(recorder.steps(of: held.id), [0, 1, 2])
        XCTAssertEqual(recorder.steps(of: next.id), [0, 1, 2, 3], "once before each of its 4 steps")
        XCTAssertEqual(try serviceImages(service, try service.job(next.id)), try directImages(next.parameters),
                       "the hook changes nothing in the images")
    }

    func testFullQueueIsRefusedWithRetryAfter() throws {
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder, maxQueue: 1)
        let running = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let queued = try service.submit(JobRequest(seed: 2)).job
        XCTAssertEqual(service.queueDepth, 1)
        XCTAssertEqual(service.runningCount, 1)
        XCTAssertThrowsError(try service.submit(JobRequest(seed: 3))) { error in
            guard case let .queueFull(retryAfter) = error as? JobError else { return XCTFail("\(error)") }
            XCTAssertGreaterThanOrEqual(retryAfter, 1)
        }
        encoder.open()
        try waitForEnd(service, running.id)
        try waitForEnd(service, queued.id)
        XCTAssertNoThrow(try service.submit(JobRequest(seed: 3)), "room again")
    }

    func testIdempotencyKeyReplaysTheSameRequestAndRefusesAnother() throws {
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state)
        let first = try service.submit(JobRequest(classIndex: 1), idempotencyKey: "abc")
        let again = try service.submit(JobRequest(classIndex: 1), idempotencyKey: "abc")
        XCTAssertTrue(again.replayed)
        XCTAssertEqual(again.job.id, first.job.id)
        XCTAssertEqual(again.job.parameters.seed, first.job.parameters.seed, "the drawn seed is kept")
        XCTAssertEqual(again.job.idempotencyKey, "abc")
        let explicitModel = try service.submit(JobRequest(model: "tiny", classIndex: 1), idempotencyKey: "abc")
        XCTAssertEqual(explicitModel.job.id, first.job.id, "naming the default model is the same request")
        assertJobError(.idempotencyConflict(key: "abc", existing: first.job.id)) {
            _ = try service.submit(JobRequest(classIndex: 2), idempotencyKey: "abc")
        }
        XCTAssertNotEqual(try service.submit(JobRequest(classIndex: 1), idempotencyKey: "other").job.id, first.job.id)
        XCTAssertEqual(service.list().total, 2)
        try waitForEnd(service, first.job.id)
        service.drain(deadline: .seconds(600))
        // The key survives a restart.
        let restarted = try makeService(self, state: state)
        let replay = try restarted.submit(JobRequest(classIndex: 1), idempotencyKey: "abc")
        XCTAssertTrue(replay.replayed)
        XCTAssertEqual(replay.job.id, first.job.id)
    }

    func testListIsNewestFirstFilteredAndPaged() throws {
        let clock = TestClock()
        let encoder = RawEncoder(gated: true)
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder, clock: clock)
        var ids: [JobID] = []
        for seed in 0..<4 {
            ids.append(try service.submit(JobRequest(seed: UInt64(seed), previewEvery: 1)).job.id)
            clock.advance(hours: 0.001)
        }
        encoder.waitUntilEntered(1)
        XCTAssertEqual(service.list().jobs.map(\.id), ids.reversed())
        XCTAssertEqual(service.list(limit: 2, offset: 1).jobs.map(\.id), [ids[2], ids[1]])
        XCTAssertEqual(service.list(limit: 2, offset: 1).total, 4)
        XCTAssertEqual(service.list(status: .running).jobs.map(\.id), [ids[0]])
        XCTAssertEqual(service.list(status: .queued).jobs.map(\.queuePosition), [3, 2, 1])
        encoder.open()
        for id in ids { try waitForEnd(service, id) }
        XCTAssertEqual(service.list(status: .succeeded).total, 4)
    }

    func testDeleteRemovesFilesAndAnswersGoneRepeatedly() throws {
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state)
        let job = try service.submit(JobRequest(seed: 9)).job
        try waitForEnd(service, job.id)
        let directory = state.appendingPathComponent("jobs/\(job.id)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.path))
        try service.delete(job.id)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path))
        assertJobError(.gone(job.id)) { _ = try service.job(job.id) }
        assertJobError(.gone(job.id)) { _ = try service.image(job.id) }
        assertJobError(.gone(job.id)) { _ = try service.subscribe(job.id) }
        XCTAssertNoThrow(try service.delete(job.id), "deleting again is fine")
        let unknown = JobID("0123456789abcdef")!
        assertJobError(.notFound(unknown)) { try service.delete(unknown) }
        assertJobError(.notFound(unknown)) { _ = try service.cancel(unknown) }
        XCTAssertEqual(service.list().total, 0)
        service.drain(deadline: .zero)
        // Tombstones are durable.
        let restarted = try makeService(self, state: state)
        assertJobError(.gone(job.id)) { _ = try restarted.job(job.id) }
    }

    func testDeleteOfActiveJobsCancelsThem() throws {
        let encoder = RawEncoder(gated: true)
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state, encoder: encoder)
        let running = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let queued = try service.submit(JobRequest(seed: 2)).job
        let watcher = try service.subscribe(running.id)
        try service.delete(queued.id)
        try service.delete(running.id)
        XCTAssertEqual(service.queueDepth, 0)
        var last: JobEvent?
        while let event = watcher.next(timeout: .seconds(10)) { last = event }
        XCTAssertEqual(last?.kind, .canceled)
        encoder.open()
        // The worker drops the deleted job after its step and takes the next one.
        let next = try service.submit(JobRequest(seed: 3)).job
        XCTAssertEqual(try waitForEnd(service, next.id).kind, .succeeded)
        assertJobError(.gone(running.id)) { _ = try service.job(running.id) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: state.appendingPathComponent("jobs/\(running.id)").path))
    }

    func testRetentionByCountAndAgeLeavesTombstones() throws {
        let clock = TestClock()
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state, keepJobs: 2, keepHours: 1, clock: clock)
        var ids: [JobID] = []
        for seed in 0..<3 {
            let id = try service.submit(JobRequest(seed: UInt64(seed))).job.id
            try waitForEnd(service, id)
            ids.append(id)
            clock.advance(hours: 0.1)
        }
        assertJobError(.gone(ids[0])) { _ = try service.job(ids[0]) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: state.appendingPathComponent("jobs/\(ids[0])").path))
        XCTAssertEqual(service.list().jobs.map(\.id), [ids[2], ids[1]])
        clock.advance(hours: 0.85)   // ids[1] finished 1.05 h ago, ids[2] 0.95 h ago
        service.sweepExpired()
        assertJobError(.gone(ids[1])) { _ = try service.job(ids[1]) }
        XCTAssertEqual(try service.job(ids[2]).status, .succeeded)
        service.drain(deadline: .zero)
        clock.advance(hours: 1)
        let restarted = try makeService(self, state: state, keepJobs: 2, keepHours: 1, clock: clock)
        for id in ids { assertJobError(.gone(id)) { _ = try restarted.job(id) } }
    }

    func testFailedEncodingFailsTheJobWithAMessage() throws {
        let encoder = RawEncoder()
        encoder.failFinal()
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        let job = try service.submit(JobRequest(seed: 4)).job
        XCTAssertEqual(try waitForEnd(service, job.id).kind, .failed)
        let failed = try service.job(job.id)
        XCTAssertEqual(failed.status, .failed)
        XCTAssertTrue(failed.error?.contains("cannot store the images") ?? false, failed.error ?? "nil")
        assertJobError(.noResult(job.id, status: .failed)) { _ = try service.image(job.id) }
    }

    func testDrainFinishesRunningJobsWithinTheDeadlineAndRefusesNewOnes() throws {
        let encoder = RawEncoder(gated: true)
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state, encoder: encoder)
        let running = try service.submit(JobRequest(seed: 1, previewEvery: 1)).job
        encoder.waitUntilEntered(1)
        let queued = try service.submit(JobRequest(seed: 2), idempotencyKey: "k").job
        let queuedWatch = try service.subscribe(queued.id)
        let drained = onThread { service.drain(deadline: .seconds(600)) }
        try waitUntil("the drain began") { !service.isAccepting }
        assertJobError(.shuttingDown) { _ = try service.submit(JobRequest(seed: 3)) }
        XCTAssertEqual(try service.submit(JobRequest(seed: 2), idempotencyKey: "k").job.id, queued.id,
                       "a retry of an accepted job is still answered")
        XCTAssertTrue(service.isDraining)
        encoder.open()
        XCTAssertEqual(drained.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(try service.job(running.id).status, .succeeded, "finished within the deadline")
        XCTAssertEqual(try service.job(queued.id).status, .queued, "stays queued for the next start")
        var last: JobEvent?
        while let event = queuedWatch.next(timeout: .seconds(1)) { last = event }
        XCTAssertEqual(last?.kind, .requeued)
        service.drain(deadline: .zero)   // again: returns at once
        let restarted = try makeService(self, state: state)
        XCTAssertEqual(try waitForEnd(restarted, queued.id).kind, .succeeded)
    }

    func testUnconditionalSamplingUsesTheNullClass() throws {
        let service = try makeService(self, state: try makeStateDirectory(self))
        let job = try service.submit(JobRequest(seed: 11, unconditional: true)).job
        XCTAssertNil(job.parameters.classIndex)
        XCTAssertEqual(job.parameters.guidance, 0)
        XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
        XCTAssertEqual(try serviceImages(service, try service.job(job.id)), try directImages(job.parameters))
        XCTAssertThrowsError(try service.submit(JobRequest(classIndex: 1, unconditional: true))) { error in
            guard case .invalidParameter(name: "class", message: _) = error as? JobError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try service.submit(JobRequest(guidance: 2, unconditional: true))) { error in
            guard case .invalidParameter(name: "guidance", message: _) = error as? JobError else { return XCTFail("\(error)") }
        }
        let defaulted = try service.submit(JobRequest(seed: 12)).job
        XCTAssertEqual(defaulted.parameters.classIndex, 0, "the model's default class")
        XCTAssertEqual(defaulted.parameters.guidance, 1, "the checkpoint's default guidance")
    }

    func testFailedPreviewsCostOnlyThePreview() throws {
        let encoder = RawEncoder()
        encoder.failPreview()
        let service = try makeService(self, state: try makeStateDirectory(self), encoder: encoder)
        let job = try service.submit(JobRequest(seed: 6, previewEvery: 1)).job
        XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
        let done = try service.job(job.id)
        XCTAssertNil(done.previewStep)
        assertJobError(.noPreview(job.id)) { _ = try service.preview(job.id) }
        XCTAssertEqual(try serviceImages(service, done), try directImages(job.parameters))
    }
}
