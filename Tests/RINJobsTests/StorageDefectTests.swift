import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import XCTest

/// Storage defects found by reading the job layer (issue 10, item 5), each seen through a restart.
final class StorageDefectTests: XCTestCase {
    /// A deletion cut short (the tombstone written, the job's files still there: a crash or a
    /// failing disk between the two) must not bring the job back at the next start.
    func testADeletionCutShortDoesNotBringTheJobBack() throws {
        let state = try makeStateDirectory(self)
        let service = try makeService(self, state: state)
        let job = try service.submit(JobRequest(seed: 41)).job
        XCTAssertEqual(try waitForEnd(service, job.id).kind, .succeeded)
        let directory = state.appendingPathComponent("jobs/\(job.id)")
        let saved = state.appendingPathComponent("saved-\(job.id)")
        try FileManager.default.copyItem(at: directory, to: saved)
        try service.delete(job.id)
        service.drain(deadline: .zero)
        // What a removal that stopped after the tombstone leaves behind.
        try FileManager.default.moveItem(at: saved, to: directory)

        let restarted = try makeService(self, state: state)
        assertJobError(.gone(job.id)) { _ = try restarted.job(job.id) }
        XCTAssertFalse(restarted.list().jobs.contains { $0.id == job.id })
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path), "the removal is finished at start")
    }

    /// Job directories without `job.json` are removed at start, not skipped at every start; one
    /// holding a record moved aside as corrupt stays for the operator.
    func testJobDirectoriesWithoutARecordAreRemovedAtStart() throws {
        let state = try makeStateDirectory(self)
        let jobs = state.appendingPathComponent("jobs")
        let orphan = jobs.appendingPathComponent("00000000000000aa")
        let corrupt = jobs.appendingPathComponent("00000000000000bb")
        try FileManager.default.createDirectory(at: orphan, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: corrupt, withIntermediateDirectories: true)
        try Data("left over".utf8).write(to: orphan.appendingPathComponent("image-0.raw"))
        try Data("{".utf8).write(to: corrupt.appendingPathComponent("job.json.corrupt"))

        let service = try makeService(self, state: state)
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan.path), "a directory without a record is removed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: corrupt.appendingPathComponent("job.json.corrupt").path))
        XCTAssertEqual(service.list().total, 0)
    }
}
