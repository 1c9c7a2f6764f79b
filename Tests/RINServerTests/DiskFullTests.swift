import Foundation
import Logging
import RINJobs
import RINModel
import RINServer
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A full state directory, on a real (small) tmpfs: submits get 507, readiness turns 503, and an
/// accepted job whose images cannot be stored stays queued and succeeds once space returns, which
/// is also what a restart finds (issue 12).
final class DiskFullTests: XCTestCase {
    func testFullStateDirectory() throws {
        let mount = try SmallTmpfs(bytes: 2 << 20)
        defer { mount.unmount() }
        let gate = RunGate()
        let stateDirectory = mount.path.appendingPathComponent("state")
        let server = try TestServer(stateDirectory: stateDirectory, beforeRun: gate.hook)
        defer { server.shutdown() }
        let port = server.port

        // Accepted and held running before its first step.
        let id = try server.submit("class=0&seed=3&steps=3&n=2&preview_every=0")["id"] as! String
        try server.waitFor(id, ["running"])

        let filler = try mount.fill()
        let refused = try http("POST", port, "/generate?class=1&steps=2")
        assertProblem(refused, status: 507)
        XCTAssertNotNil(refused.header("retry-after"))
        XCTAssertFalse(refused.text.contains(mount.path.path), "no server paths in problem details: \(refused.text)")
        assertProblem(try http("GET", port, "/readyz"), status: 503)

        // The job samples, cannot store its images, and goes back to the queue: never "failed".
        gate.release()
        var status: String?
        try poll {
            status = try server.job(id)["status"] as? String
            return status != "running"
        }
        XCTAssertEqual(status, "queued", "the job whose images cannot be stored goes back to the queue, not failed")
        assertProblem(try http("GET", port, "/readyz"), status: 503)
        XCTAssertEqual(try server.job(id)["status"] as? String, "queued")

        // Space returns: the workers resume by themselves and the job succeeds.
        try FileManager.default.removeItem(at: filler)
        let done = try server.waitFor(id, ["succeeded", "failed"])
        XCTAssertEqual(done["status"] as? String, "succeeded")
        XCTAssertEqual(try http("GET", port, "/readyz").status, 200)
        let image = try http("GET", port, "/jobs/\(id)/image.png?i=1")
        XCTAssertEqual(image.status, 200)

        // A restart agrees with what clients were told.
        server.server.stop()
        server.service?.drain(deadline: .zero)
        var logger = Logger(label: "rind.test")
        logger.logLevel = .critical
        let restarted = try JobService(
            configuration: JobService.Configuration(stateDirectory: stateDirectory), models: [try RINCheckpoint.load(from: TestProject.tinyCheckpoint)],
            encoder: PNGImageEncoder(), logger: logger)
        defer { restarted.drain(deadline: .zero) }
        let jobID = try XCTUnwrap(JobID(id))
        XCTAssertEqual(try restarted.job(jobID).status, .succeeded)
        XCTAssertEqual(Array(try restarted.image(jobID, index: 1).data), image.body)
    }
}

/// A tmpfs of a few MiB mounted for one test; skips (with the reason printed) when not root or
/// when mounting is not allowed (containers without CAP_SYS_ADMIN).
struct SmallTmpfs {
    let path: URL

    init(bytes: Int) throws {
        guard getuid() == 0 else {
            print("DiskFullTests: skipped: mounting a tmpfs needs root")
            throw XCTSkip("mounting a tmpfs needs root")
        }
        path = Fixtures.temporaryDirectory("rind-tmpfs")
        let (status, output) = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", path.path])
        guard status == 0 else {
            print("DiskFullTests: skipped: cannot mount a tmpfs: \(output)")
            throw XCTSkip("cannot mount a tmpfs: \(output)")
        }
    }

    /// Writes a file until the file system is full; returns it.
    func fill() throws -> URL {
        let file = path.appendingPathComponent("filler")
        let fd = open(file.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw TestHTTPError.connect(errno) }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xAB, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        XCTAssertEqual(errno, ENOSPC)
        return file
    }

    func unmount() {
        _ = try? runProcess("/bin/umount", ["-l", path.path])
        try? FileManager.default.removeItem(at: path)
    }
}
