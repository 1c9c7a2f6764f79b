import Foundation
import Logging
import RINJobs
import RINModel
import RINServer
import RINTestSupport
import XCTest

/// A cancel whose record cannot be written (full disk) is not dropped: the service says it is not
/// ready until the record is on disk, and writes it when space returns (issue 10, item 5: it was
/// swallowed by `try?`, and a restart ran the canceled job again).
final class CancelPersistTests: XCTestCase {
    func testACancelThatCannotBeWrittenKeepsTheServiceNotReadyUntilItIs() throws {
        let mount = try SmallTmpfs(bytes: 2 << 20)
        defer { mount.unmount() }
        let gate = AllJobsGate()
        var configuration = JobService.Configuration(stateDirectory: mount.path.appendingPathComponent("state"),
                                                     workers: 1, previewEvery: 0)
        configuration.beforeStep = gate.hook
        var logger = Logger(label: "rind.test")
        logger.logLevel = .critical
        let service = try JobService(configuration: configuration, models: [try RINCheckpoint.load(from: TestProject.tinyCheckpoint)],
                                     encoder: PNGImageEncoder(), logger: logger)
        defer {
            gate.open()
            service.drain(deadline: .zero)
        }
        gate.close()
        let job = try service.submit(JobRequest(seed: 5, steps: 3)).job
        gate.waitUntilHeld(job.id.rawValue)

        let filler = try mount.fill()
        XCTAssertTrue(try service.cancel(job.id).cancelRequested, "the cancel is answered")
        try FileManager.default.removeItem(at: filler)
        let record = mount.path.appendingPathComponent("state/jobs/\(job.id)/job.json")
        XCTAssertFalse(try String(contentsOf: record, encoding: .utf8).contains("\"cancel_requested\" : true"),
                       "the disk was full: the record on disk does not have the cancel yet")
        XCTAssertFalse(service.storageWritable(), "a record the client was promised is not on disk: not ready")

        gate.open()
        XCTAssertTrue(poll(seconds: 120) { service.storageWritable() }, "ready again once the record is written")
        XCTAssertEqual(try service.job(job.id).status, .canceled)
        let written = try String(contentsOf: record, encoding: .utf8)
        XCTAssertTrue(written.contains("\"status\" : \"canceled\""), written)
    }
}
