// Cluster mode of the job service (issue 13): two or three `JobService` "boxes" in this process on
// one real throwaway PostgreSQL server (`PostgresTestCase`: a fresh database per test), each with
// its own `PostgresJobStore`, running the tiny fixture checkpoint. Jobs are held at a known step by each
// box's own step gate (`Configuration.beforeStep`), never by timing; leases are short (2 s) so
// that a frozen box's jobs are reclaimed quickly, and every wait has a generous deadline.
import Foundation
import Logging
import RINCluster
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import RINTestSupport
import XCTest

final class ClusterServiceTests: PostgresTestCase, @unchecked Sendable {
    /// A job submitted on one box runs on some box; every box answers for it (record, list,
    /// images, preview) with the images of a local-mode run of the same seed.
    func testAJobRunsOnSomeBoxAndEveryBoxAnswersWithTheLocalImages() throws {
        let boxes = try (0..<3).map { try makeBox(name: "box\($0)") }
        let submitted = try boxes[0].service.submit(JobRequest(classIndex: 1, seed: 4242, count: 2, previewEvery: 1))
        XCTAssertFalse(submitted.replayed)
        XCTAssertEqual(submitted.job.status, .queued)

        let end = try waitForEnd(boxes[2].service, submitted.job.id)
        XCTAssertEqual(end.kind, .succeeded)

        // A local-mode service, same request: the images every box serves are its images.
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("rind-cluster-local-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: state) }
        let local = try JobService(configuration: JobService.Configuration(stateDirectory: state, previewEvery: 0),
                                   models: [Fixtures.tiny], encoder: RawEncoder())
        addTeardownBlock { local.drain(deadline: .zero) }
        let localJob = try local.submit(JobRequest(classIndex: 1, seed: 4242, count: 2)).job
        XCTAssertEqual(try waitForEnd(local, localJob.id).kind, .succeeded)
        let localImages = try (0..<2).map { try local.image(localJob.id, index: $0).data }
        XCTAssertEqual(localImages, try directImages(localJob.parameters))

        for box in boxes {
            let job = try box.service.job(submitted.job.id)
            XCTAssertEqual(job.status, .succeeded, box.name)
            XCTAssertEqual(job.imageCount, 2, box.name)
            XCTAssertEqual(job.progress.step, 4, box.name)
            XCTAssertEqual(job.attempts, 1, box.name)
            XCTAssertEqual(job.parameters, localJob.parameters, box.name)
            XCTAssertEqual(try (0..<2).map { try box.service.image(job.id, index: $0).data }, localImages, box.name)
            XCTAssertEqual(try box.service.preview(job.id).step, 4, box.name)
            let page = try box.service.listJobs()
            XCTAssertEqual(page.total, 1, box.name)
            XCTAssertEqual(page.jobs.map(\.id), [job.id], box.name)
            try waitUntil("\(box.name) runs nothing") { box.service.runningCount == 0 }
        }
        assertJobError(.imageIndexOutOfRange(submitted.job.id, index: 2, count: 2)) {
            _ = try boxes[1].service.image(submitted.job.id, index: 2)
        }
        assertJobError(.notFound(JobID("00000000000000ff")!)) { _ = try boxes[1].service.job(JobID("00000000000000ff")!) }
    }

    /// A cancel on a box that does not run the job reaches the box that does: the run stops
    /// after its step, `canceled` everywhere.
    func testCancelFromAnotherBoxStopsTheRun() throws {
        let boxes = try (0..<2).map { try makeBox(name: "box\($0)", holdAt: 1) }
        let id = try boxes[0].service.submit(JobRequest(seed: 7)).job.id
        let (runner, other) = try heldBy(boxes, id)
        XCTAssertEqual(try other.service.job(id).status, .running)

        let asked = try other.service.cancel(id)
        XCTAssertTrue(asked.cancelRequested)
        XCTAssertEqual(asked.status, .running, "a running job stops after its step")
        // The runner hears of it from its lease renewal (poked by the notification).
        try waitUntil("the runner learns of the cancel") { (try? runner.service.job(id).cancelRequested) == true }
        runner.gate.open()
        let end = try waitForEnd(other.service, id)
        XCTAssertEqual(end.kind, .canceled)
        for box in boxes {
            XCTAssertEqual(try box.service.job(id).status, .canceled, box.name)
            assertJobError(.noResult(id, status: .canceled)) { _ = try box.service.image(id) }
        }
        XCTAssertLessThan(runner.gate.steps(of: id).max() ?? 0, 4, "the run stopped before its last step")
        try waitUntil("the runner's slot is free") { runner.service.runningCount == 0 }
    }

    /// A delete on a box that does not run the job: gone everywhere, and the runner drops it.
    func testDeleteFromAnotherBoxDropsTheRun() throws {
        let boxes = try (0..<2).map { try makeBox(name: "box\($0)", holdAt: 1) }
        let id = try boxes[1].service.submit(JobRequest(seed: 8, previewEvery: 1)).job.id
        let (runner, other) = try heldBy(boxes, id)
        let watching = try other.service.subscribe(id)
        XCTAssertEqual(watching.next(timeout: .seconds(30))?.kind, .snapshot)

        try other.service.delete(id)
        try other.service.delete(id)   // idempotent
        assertJobError(.gone(id)) { _ = try other.service.job(id) }
        XCTAssertEqual(try readToEnd(watching).kind, .canceled, "a watcher on another box hears the end")
        // The runner hears of it (notification, then its lease renewal) while its step is held.
        try waitUntil("the runner drops the job") { (try? runner.service.job(id)) == nil }
        assertJobError(.gone(id)) { _ = try runner.service.job(id) }
        runner.gate.open()
        try waitUntil("the runner's slot is free") { runner.service.runningCount == 0 }
        for box in boxes { assertJobError(.gone(id)) { _ = try box.service.job(id) } }
        XCTAssertEqual(try boxes[0].service.listJobs().total, 0)
    }

    /// `subscribe` on a box that does not run the job: the snapshot, progress fed by the
    /// database's notifications, previews, and the end with the final images.
    func testSubscribeOnAnotherBoxSeesProgressAndTheEnd() throws {
        let boxes = try (0..<2).map { try makeBox(name: "box\($0)", holdAt: 1) }
        let id = try boxes[0].service.submit(JobRequest(seed: 99, count: 1, previewEvery: 2)).job.id
        let (runner, other) = try heldBy(boxes, id)
        let subscription = try other.service.subscribe(id)
        defer { subscription.cancel() }
        let first = try XCTUnwrap(subscription.next(timeout: .seconds(30)))
        XCTAssertEqual(first.kind, .snapshot)
        XCTAssertEqual(first.job.status, .running)
        XCTAssertEqual(first.job.progress.step, 1, "the held run's first step was written")
        runner.gate.open()
        var kinds: [JobEvent.Kind] = []
        var steps: [Int] = []
        var last: JobEvent?
        while let event = subscription.next(timeout: .seconds(60)) {
            kinds.append(event.kind)
            steps.append(event.job.progress.step)
            last = event
            if event.isTerminal { break }
        }
        let end = try XCTUnwrap(last)
        XCTAssertEqual(end.kind, .succeeded, "events: \(kinds)")
        XCTAssertTrue(kinds.contains(.progress) || kinds.contains(.preview), "events between: \(kinds)")
        XCTAssertEqual(steps, steps.sorted(), "progress never goes back")
        XCTAssertEqual(end.job.progress.step, 4)
        let images = try directImages(end.job.parameters)
        XCTAssertEqual(try other.service.image(id).data, images[0])
        XCTAssertEqual(end.preview?.step, 4, "the end carries the final picture")
    }

    /// The queue bound is the cluster's: with every slot busy, `maxQueue` queued jobs over all
    /// boxes, and the next submit on any box is 429.
    func testTheQueueBoundIsTheClusters() throws {
        let boxes = try (0..<2).map { try makeBox(name: "box\($0)", maxQueue: 2, holdAt: 0) }
        let first = try boxes[0].service.submit(JobRequest(seed: 1)).job.id
        let second = try boxes[1].service.submit(JobRequest(seed: 2)).job.id
        try waitUntil("both boxes run one job") { boxes.allSatisfy { $0.gate.held != nil } }
        XCTAssertEqual(Set(boxes.compactMap(\.gate.held)), [first, second])
        let third = try boxes[0].service.submit(JobRequest(seed: 3)).job
        let fourth = try boxes[1].service.submit(JobRequest(seed: 4)).job
        XCTAssertEqual([third.queuePosition, fourth.queuePosition], [1, 2], "from the submit's own answer")
        for box in boxes {
            XCTAssertThrowsError(try box.service.submit(JobRequest(seed: 5)), box.name) { error in
                guard case .queueFull = error as? JobError else { return XCTFail("\(error)") }
            }
        }
        let queuedPage = try boxes[0].service.listJobs(status: .queued)
        XCTAssertEqual(queuedPage.total, 2)
        XCTAssertEqual(queuedPage.jobs.map(\.queuePosition), [2, 1], "newest first, each with its place in the cluster's queue")
        for box in boxes { box.gate.open() }
        for id in try boxes[0].service.listJobs().jobs.map(\.id) {
            XCTAssertEqual(try waitForEnd(boxes[1].service, id).kind, .succeeded)
        }
    }

    /// An idempotency key is the cluster's: the same request on another box replays the job, a
    /// different one is a conflict.
    func testIdempotentSubmitAcrossBoxes() throws {
        let boxes = try (0..<2).map { try makeBox(name: "box\($0)") }
        let request = JobRequest(classIndex: 2, seed: 31, count: 1)
        let first = try boxes[0].service.submit(request, idempotencyKey: "order-17")
        XCTAssertFalse(first.replayed)
        let again = try boxes[1].service.submit(request, idempotencyKey: "order-17")
        XCTAssertTrue(again.replayed)
        XCTAssertEqual(again.job.id, first.job.id)
        var different = request
        different.seed = 32
        assertJobError(.idempotencyConflict(key: "order-17", existing: first.job.id)) {
            _ = try boxes[1].service.submit(different, idempotencyKey: "order-17")
        }
        XCTAssertEqual(try waitForEnd(boxes[1].service, first.job.id).kind, .succeeded)
        let replayOfFinished = try boxes[0].service.submit(request, idempotencyKey: "order-17")
        XCTAssertTrue(replayOfFinished.replayed)
        XCTAssertNil(replayOfFinished.job.queuePosition, "a finished job has no place in the queue")
        XCTAssertEqual(try boxes[0].service.listJobs().total, 1)
    }

    /// A box that stops renewing its leases (frozen mid-run, as if it died): once its lease
    /// expired another box claims the job and runs it again from its seed, with the same images;
    /// when the frozen box wakes, its writes are refused and it drops the run.
    func testAnotherBoxReclaimsAfterTheLeaseAndMakesTheSameImages() throws {
        let renewing = LockedValue(true)
        let frozen = try makeBox(name: "frozen", holdAt: 2, renewLeases: { renewing.value })
        let id = try frozen.service.submit(JobRequest(classIndex: 0, seed: 555, count: 2)).job.id
        XCTAssertEqual(frozen.gate.waitUntilHeld(), id)
        renewing.value = false
        let rescuer = try makeBox(name: "rescuer")
        let end = try waitForEnd(rescuer.service, id)
        XCTAssertEqual(end.kind, .succeeded)
        let job = try rescuer.service.job(id)
        XCTAssertEqual(job.attempts, 2, "run again by the rescuer")
        let images = try (0..<2).map { try rescuer.service.image(id, index: $0).data }
        XCTAssertEqual(images, try directImages(job.parameters))

        // The frozen box wakes: its next write is refused (another box held the job), it drops
        // the run and answers from the database.
        renewing.value = true
        frozen.gate.open()
        try waitUntil("the frozen box drops its run") { frozen.service.runningCount == 0 }
        let seen = try frozen.service.job(id)
        XCTAssertEqual(seen.status, .succeeded)
        XCTAssertEqual(seen.attempts, 2)
        XCTAssertEqual(try (0..<2).map { try frozen.service.image(id, index: $0).data }, images)
    }

    /// A drain past its deadline gives the running job back to the cluster's queue: another box
    /// runs it again from its seed, with the same images.
    func testDrainGivesRunningJobsBackToTheCluster() throws {
        let leaving = try makeBox(name: "leaving", holdAt: 1)
        let id = try leaving.service.submit(JobRequest(seed: 77, count: 1)).job.id
        XCTAssertEqual(leaving.gate.waitUntilHeld(), id)
        let staying = try makeBox(name: "staying")
        let drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            leaving.service.drain(deadline: .zero)
            drained.signal()
        }
        try waitUntil("the drain began") { leaving.service.isDraining }
        leaving.gate.open()
        XCTAssertEqual(drained.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(leaving.service.runningCount, 0)
        let end = try waitForEnd(staying.service, id)
        XCTAssertEqual(end.kind, .succeeded)
        let job = try staying.service.job(id)
        XCTAssertEqual(job.attempts, 2, "run again by the box that stayed")
        XCTAssertEqual(try staying.service.image(id).data, try directImages(job.parameters)[0])
        // The drained box still answers, from the database.
        XCTAssertEqual(try leaving.service.job(id).status, .succeeded)
        assertJobError(.shuttingDown) { _ = try leaving.service.submit(JobRequest(seed: 78)) }
    }

    /// The database restarted while a job runs: calls that need it answer `databaseUnavailable`
    /// (503) meanwhile, readiness says so, and no job is lost: the running one and a queued one
    /// finish once it is back, with the images of their seeds.
    func testDatabaseRestartMidRunLosesNoJob() throws {
        let box = try makeBox(name: "box", holdAt: 2)
        let running = try box.service.submit(JobRequest(seed: 11, count: 1)).job.id
        XCTAssertEqual(box.gate.waitUntilHeld(), running)
        // Another box, which may take the job over if the outage outlasts the lease.
        let observer = try makeBox(name: "observer")
        XCTAssertTrue(box.service.storageWritable())

        try server.stop()
        XCTAssertThrowsError(try box.service.submit(JobRequest(seed: 12))) { error in
            guard case .databaseUnavailable = error as? JobError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try observer.service.job(running)) { error in
            guard case .databaseUnavailable = error as? JobError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try box.service.listJobs()) { error in
            guard case .databaseUnavailable = error as? JobError else { return XCTFail("\(error)") }
        }
        try waitUntil("readiness reports the database") { !box.service.storageWritable() }
        // The run goes on; its writes fail and it waits for the database.
        box.gate.open()
        try waitUntil("the run waits for the database") { !box.service.storageWritable() && box.service.runningCount == 0 }

        try server.start()
        try waitUntil("readiness is back") { box.service.storageWritable() }
        let end = try waitForEnd(box.service, running)
        XCTAssertEqual(end.kind, .succeeded)
        let queued = try box.service.submit(JobRequest(seed: 12, count: 1)).job.id
        XCTAssertEqual(try waitForEnd(observer.service, queued).kind, .succeeded)
        for id in [running, queued] {
            let job = try observer.service.job(id)
            XCTAssertEqual(job.status, .succeeded)
            XCTAssertEqual(try observer.service.image(id).data, try directImages(job.parameters)[0])
        }
        XCTAssertEqual(try observer.service.listJobs().total, 2)
    }

    // MARK: - Boxes

    private struct Box {
        let name: String
        let service: JobService
        let store: PostgresJobStore
        let gate: StepGate<JobID>
    }

    /// A box: its own store (own pool, own LISTEN connection) and service on the database.
    private func makeBox(name: String, workers: Int = 1, maxQueue: Int = 16,
                         holdAt: Int? = nil, renewLeases: (@Sendable () -> Bool)? = nil) throws -> Box {
        let store = try makeStore(box: name, prepare: false)
        let gate = StepGate<JobID>(holdAt: holdAt)
        var configuration = JobService.Configuration(
            stateDirectory: URL(fileURLWithPath: "/nonexistent/cluster-mode-needs-no-state-dir"),
            workers: workers, maxQueue: maxQueue, keepJobs: 100, previewEvery: 0, subscriberBuffer: 64)
        configuration.beforeStep = gate.hook
        configuration.storageRetrySeconds = 0.2
        configuration.cluster = JobService.Cluster(store: store, lease: .seconds(2), renewLeases: renewLeases)
        let service = try JobService(configuration: configuration, models: [Fixtures.tiny],
                                     encoder: RawEncoder(), logger: Logger(label: "test.jobs.\(name)"))
        // Last registered runs first: open the gate, then drain (`tearDown` closes the store).
        addTeardownBlock { service.drain(deadline: .zero) }
        addTeardownBlock { gate.open() }
        return Box(name: name, service: service, store: store, gate: gate)
    }

    /// Which box holds `id` at its gate, and another one.
    private func heldBy(_ boxes: [Box], _ id: JobID) throws -> (runner: Box, other: Box) {
        try waitUntil("a box runs the job") { boxes.contains { $0.gate.held == id } }
        let runner = try XCTUnwrap(boxes.first { $0.gate.held == id })
        let other = try XCTUnwrap(boxes.first { $0.name != runner.name })
        return (runner, other)
    }
}
