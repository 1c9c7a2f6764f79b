import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import RINTestSupport
import XCTest

/// `isMakingProgress(within:)`, which the daemon feeds systemd's watchdog from, and the test-only
/// hang (`Configuration.testHangAtStep`) that stands for a hung worker.
final class ProgressTests: XCTestCase {
    func makeHangingService(state: URL, hangAt step: Int) throws -> JobService {
        var configuration = JobService.Configuration(stateDirectory: state, workers: 1, previewEvery: 0)
        configuration.testHangAtStep = step
        let service = try JobService(configuration: configuration, models: [Fixtures.tiny], encoder: RawEncoder())
        addTeardownBlock { service.drain(deadline: .zero) }
        return service
    }

    /// Waits until the job's recorded progress reaches `step` (a worker holds it there).
    func waitForStep(_ service: JobService, _ id: JobID, _ step: Int) throws {
        try waitUntil("job \(id) reaches step \(step)") { try service.job(id).progress.step >= step }
    }

    func testAnIdleServiceCountsAsMakingProgress() throws {
        let service = try makeService(self, state: try makeStateDirectory(self))
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertTrue(service.isMakingProgress(within: .milliseconds(1)), "nothing to run is not a stall")
        let job = try service.submit(JobRequest(seed: 1)).job
        XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertTrue(service.isMakingProgress(within: .milliseconds(1)), "idle again after the job")
    }

    func testAHungWorkerWithAJobStopsTheProgressUntilTheJobIsCanceled() throws {
        let service = try makeHangingService(state: try makeStateDirectory(self), hangAt: 1)
        let hung = try service.submit(JobRequest(seed: 2)).job
        let waiting = try service.submit(JobRequest(seed: 3)).job
        try waitForStep(service, hung.id, 1)
        Thread.sleep(forTimeInterval: 0.3)   // the hang is forever: no step can end in this time
        XCTAssertFalse(service.isMakingProgress(within: .milliseconds(200)), "a hung job must stop the feeding")
        XCTAssertTrue(service.isMakingProgress(within: .seconds(3600)), "the last step ended within the window")
        XCTAssertEqual(try service.job(hung.id).status, .running)
        XCTAssertEqual(try service.job(hung.id).progress.step, 1, "held before step 2")
        XCTAssertEqual(try service.job(waiting.id).status, .queued)

        XCTAssertTrue(try service.cancel(hung.id).cancelRequested)
        XCTAssertEqual(try waitForEnd(service, hung.id).kind, .canceled, "a cancel releases the hang")
        try waitForStep(service, waiting.id, 1)   // the next job hangs the same way
        XCTAssertEqual(try service.cancel(waiting.id).status, .running)
        XCTAssertEqual(try waitForEnd(service, waiting.id).kind, .canceled)
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertTrue(service.isMakingProgress(within: .milliseconds(1)), "nothing left to run")
    }

    func testDrainReleasesAHungJobAsQueuedAndTheNextStartFinishesIt() throws {
        let state = try makeStateDirectory(self)
        let service = try makeHangingService(state: state, hangAt: 2)
        let job = try service.submit(JobRequest(seed: 4)).job
        try waitForStep(service, job.id, 2)
        service.drain(deadline: .zero)
        XCTAssertEqual(try service.job(job.id).status, .queued, "requeued on disk, not lost")
        let restarted = try makeService(self, state: state)
        XCTAssertEqual(try waitForEnd(restarted, job.id).kind, .succeeded)
        XCTAssertEqual(try serviceImages(restarted, try restarted.job(job.id)), try directImages(job.parameters))
    }
}
