import Foundation
import RINImage
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The built `rind` binary as a subprocess: startup refusals, sd_notify, SIGTERM drain, and a
/// crash plus restart with jobs queued and running.
final class DaemonProcessTests: XCTestCase {
    /// `<bin>/rind` beside the test bundle (`<bin>/rindPackageTests.xctest`, which on Linux is the
    /// test runner itself).
    static var binary: URL {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let bundle = Bundle(for: DaemonProcessTests.self).bundleURL
        let candidates = [runner.deletingLastPathComponent(), bundle, bundle.deletingLastPathComponent()]
            .map { $0.appendingPathComponent("rind") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    var scratch: URL!
    var checkpoints: URL!

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            XCTFail("no rind binary at \(Self.binary.path): `swift build` builds it with the tests")
            throw XCTSkip("rind not built")
        }
        scratch = Fixtures.temporaryDirectory("rind-daemon-test")
        checkpoints = scratch.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: TestProject.tinyCheckpoint, to: checkpoints.appendingPathComponent("tiny"))
    }

    override func tearDown() {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }

    func testNonLoopbackHostWithoutAPIKeyRefusesToStart() throws {
        let daemon = try Daemon(arguments: ["serve", "--checkpoints", checkpoints.path, "--host", "0.0.0.0", "--port", "0",
                                            "--state-dir", scratch.appendingPathComponent("state").path], waitForPort: false)
        let status = daemon.waitForExit()
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(daemon.output.contains("--api-key-file"), daemon.output)
    }

    /// A host that resolves to several addresses listens on the first that binds, and fails, naming
    /// the host and the port, only when none does. "localhost" is such a host on many machines
    /// (::1, then 127.0.0.1) but not on every one, so the test makes its own name: a hosts file
    /// bound over /etc/hosts in a private mount namespace (`unshare`) that rind runs in.
    func testHostWithSeveralAddressesListensOnTheFirstThatBinds() throws {
        let hosts = scratch.appendingPathComponent("hosts")
        try "::1 rind-two.test\n127.0.0.1 rind-two.test\n".write(to: hosts, atomically: true, encoding: .utf8)
        let launcher = ["/usr/bin/unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                        #"mount --bind "$0" /etc/hosts && exec "$@""#, hosts.path]
        let probe = try? runProcess(launcher[0], Array(launcher.dropFirst()) + ["getent", "ahosts", "rind-two.test"])
        guard let probe, probe.status == 0, probe.output.hasPrefix("::1 ") else {
            throw XCTSkip("no private hosts file here (unshare or mount refused): \(probe?.output ?? "no unshare")")
        }
        // The port taken on ::1, the first address: rind listens on 127.0.0.1.
        guard let ipv6 = HeldPort(address: "::1", port: 0) else { throw XCTSkip("no IPv6 loopback here") }
        let arguments = ["serve", "--checkpoints", checkpoints.path, "--host", "rind-two.test",
                         "--port", String(ipv6.port), "--state-dir", scratch.appendingPathComponent("state").path]
        let daemon = try Daemon(arguments: arguments, waitForPort: false, launcher: launcher)
        XCTAssertTrue(poll { (try? http("GET", ipv6.port, "/healthz"))?.status == 200 || !daemon.process.isRunning },
                      daemon.output)
        XCTAssertEqual(try http("GET", ipv6.port, "/healthz").status, 200, daemon.output)
        daemon.terminate()

        // Taken on both: the error names the host and the port, with the last address's errno.
        let ipv4 = try XCTUnwrap(HeldPort(address: "127.0.0.1", port: ipv6.port))
        let refused = try Daemon(arguments: arguments, waitForPort: false, launcher: launcher)
        XCTAssertEqual(refused.waitForExit(), 2, refused.output)
        XCTAssertTrue(refused.output.contains("cannot listen on rind-two.test:\(ipv6.port): bind failed: Address already in use"),
                      refused.output)
        withExtendedLifetime(ipv4) {}
    }

    func testNoModelsIsAClearError() throws {
        let empty = scratch.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let daemon = try Daemon(arguments: ["serve", "--checkpoints", empty.path, "--port", "0",
                                            "--state-dir", scratch.appendingPathComponent("state").path])
        XCTAssertEqual(daemon.waitForExit(), 1)
        XCTAssertTrue(daemon.output.contains("no models in"), daemon.output)
    }

    func testAPIKeyFileIsEnforced() throws {
        let keyFile = scratch.appendingPathComponent("api-key")
        try "daemon-key\n".write(to: keyFile, atomically: true, encoding: .utf8)
        let daemon = try Daemon(arguments: ["serve", "--checkpoints", checkpoints.path, "--host", "0.0.0.0", "--port", "0",
                                            "--api-key-file", keyFile.path,
                                            "--state-dir", scratch.appendingPathComponent("state").path])
        defer { daemon.terminate() }
        try daemon.waitUntilReady()
        XCTAssertEqual(try http("GET", daemon.port, "/jobs").status, 401)
        XCTAssertEqual(try http("GET", daemon.port, "/jobs", headers: ["Authorization": "Bearer daemon-key"]).status, 200)
        XCTAssertEqual(try http("GET", daemon.port, "/healthz").status, 200)
    }

    func testSIGTERMDrainsNotifiesAndExitsZero() throws {
        let notify = try NotifySocket(abstract: true)
        let state = scratch.appendingPathComponent("state")
        let hold = try HoldFile(in: scratch)
        let daemon = try Daemon(arguments: ["serve", "--checkpoints", checkpoints.path, "--port", "0",
                                            "--state-dir", state.path, "--workers", "1", "--threads", "1",
                                            "--drain-seconds", "0.5", "--log-format", "json"],
                                environment: hold.environment.merging(["NOTIFY_SOCKET": notify.address]) { $1 })
        defer { daemon.terminate() }
        defer { hold.release() }
        XCTAssertTrue(notify.receive(until: "READY=1").contains("READY=1"))
        XCTAssertEqual(try http("GET", daemon.port, "/readyz").status, 200)
        // Held before its first step, so it is still running when the drain deadline has passed.
        let long = try http("POST", daemon.port, "/generate?class=0&steps=50&seed=3").json["id"] as! String
        XCTAssertTrue(try poll { try http("GET", daemon.port, "/jobs/\(long)").json["status"] as? String == "running" },
                      daemon.output)
        kill(daemon.pid, SIGTERM)
        XCTAssertTrue(notify.receive(until: "STOPPING=1").contains("STOPPING=1"))
        // While the running job has its drain deadline: not ready, no new jobs, reads still work.
        assertProblem(try http("GET", daemon.port, "/readyz"), status: 503)
        assertProblem(try http("POST", daemon.port, "/generate?class=0"), status: 503)
        XCTAssertEqual(try http("GET", daemon.port, "/jobs/\(long)").json["status"] as? String, "running")
        // The deadline is set before this line is logged; let it pass, then let the job go: it
        // stops before its next step and is requeued.
        XCTAssertTrue(poll { daemon.output.contains("\"msg\":\"job service draining\"") }, daemon.output)
        usleep(600_000)
        hold.release()
        XCTAssertEqual(daemon.waitForExit(), 0, daemon.output)
        XCTAssertTrue(daemon.output.contains("\"msg\":\"drained; exiting\""), daemon.output)

        // The interrupted job was persisted as queued: the next start runs it again.
        let record = try Data(contentsOf: state.appendingPathComponent("jobs/\(long)/job.json"))
        XCTAssertTrue(String(decoding: record, as: UTF8.self).contains("\"queued\""))
    }

    func testCrashAndRestartFinishQueuedAndRunningJobsWithIdenticalImages() throws {
        let jobs = ["class=0&seed=11&steps=200&n=4&preview_every=10", "class=1&seed=12&steps=6", "class=2&seed=13&steps=7&n=2"]

        // Reference: one uninterrupted run.
        let reference = try runToCompletion(jobs, state: scratch.appendingPathComponent("reference"))

        // Interrupted: SIGKILL while the first job is held after 12 of its steps (a preview written)
        // and the others wait.
        let notify = try NotifySocket(abstract: false, directory: scratch)
        let state = scratch.appendingPathComponent("state")
        let arguments = ["serve", "--checkpoints", checkpoints.path, "--port", "0", "--state-dir", state.path,
                         "--workers", "1", "--threads", "1"]
        let hold = try HoldFile(in: scratch, freeSteps: 12)
        let first = try Daemon(arguments: arguments,
                               environment: hold.environment.merging(["NOTIFY_SOCKET": notify.address]) { $1 })
        defer { first.terminate() }
        defer { hold.release() }
        XCTAssertTrue(notify.receive(until: "READY=1").contains("READY=1"))
        var ids: [String] = []
        for query in jobs {
            ids.append(try http("POST", first.port, "/generate?\(query)").json["id"] as! String)
        }
        var held: [String: Any] = [:]
        poll {
            held = (try? http("GET", first.port, "/jobs/\(ids[0])").json) ?? [:]
            return (held["progress"] as? [String: Any])?["step"] as? Int == 12
        }
        XCTAssertEqual(held["status"] as? String, "running", "\(held)")
        XCTAssertEqual((held["progress"] as? [String: Any])?["step"] as? Int, 12, "\(held)")
        for id in ids.dropFirst() {
            XCTAssertEqual(try http("GET", first.port, "/jobs/\(id)").json["status"] as? String, "queued")
        }
        kill(first.pid, SIGKILL)
        _ = first.waitForExit()

        // A corrupt record among them is moved aside, not fatal.
        let corrupt = state.appendingPathComponent("jobs/0123456789abcdef")
        try FileManager.default.createDirectory(at: corrupt, withIntermediateDirectories: true)
        try "{ not json".write(to: corrupt.appendingPathComponent("job.json"), atomically: true, encoding: .utf8)

        let second = try Daemon(arguments: arguments)
        defer { second.terminate() }
        try second.waitUntilReady()
        for (index, id) in ids.enumerated() {
            var job: [String: Any] = [:]
            try poll {
                job = try http("GET", second.port, "/jobs/\(id)").json
                return job["status"] as? String == "succeeded"
            }
            XCTAssertEqual(job["status"] as? String, "succeeded", "job \(index): \(job)")
            let count = (job["params"] as? [String: Any])?["n"] as? Int ?? 1
            for image in 0..<count {
                let png = try http("GET", second.port, "/jobs/\(id)/image.png?i=\(image)").body
                XCTAssertEqual(png, reference[index][image], "job \(index) image \(image) differs after the restart")
            }
        }
        XCTAssertGreaterThanOrEqual(try http("GET", second.port, "/jobs/\(ids[0])").json["attempts"] as? Int ?? 0, 2)
        XCTAssertEqual(try http("GET", second.port, "/jobs/0123456789abcdef").status, 404)
        XCTAssertTrue(FileManager.default.fileExists(atPath: corrupt.appendingPathComponent("job.json.corrupt").path))
    }

    /// A batch of jobs sharing each step (--workers 4) is killed mid-run; the restart runs them
    /// again, batched, to the images each makes alone (the reference runs them one at a time).
    func testCrashWithABatchInFlightRestartsToTheSoloImages() throws {
        let jobs = ["class=0&seed=21&steps=9&n=2", "class=1&seed=22&steps=7&guidance=2", "class=2&seed=23&steps=8&sampler=ddpm"]
        let reference = try runToCompletion(jobs, state: scratch.appendingPathComponent("reference"))
        let state = scratch.appendingPathComponent("state")
        let arguments = ["serve", "--checkpoints", checkpoints.path, "--port", "0", "--state-dir", state.path,
                         "--workers", "4", "--threads", "1"]
        // The first job is held before its first step while the others queue behind it; then every
        // job may do 3 steps: the others join the first one's batch at its second step.
        let hold = try HoldFile(in: scratch, freeSteps: 0)
        let first = try Daemon(arguments: arguments, environment: hold.environment)
        defer { first.terminate() }
        defer { hold.release() }
        try first.waitUntilReady()
        var ids = [try http("POST", first.port, "/generate?\(jobs[0])").json["id"] as! String]
        poll { (try? http("GET", first.port, "/jobs/\(ids[0])").json["status"] as? String) == "running" }
        ids += try jobs.dropFirst().map { try http("POST", first.port, "/generate?\($0)").json["id"] as! String }
        try Data("3\n".utf8).write(to: hold.url)
        poll {
            let job = (try? http("GET", first.port, "/jobs/\(ids[0])").json) ?? [:]
            return (job["progress"] as? [String: Any])?["step"] as? Int == 3
        }
        for id in ids {
            XCTAssertEqual(try http("GET", first.port, "/jobs/\(id)").json["status"] as? String, "running",
                           "all three run together in one batch")
        }
        kill(first.pid, SIGKILL)
        _ = first.waitForExit()

        let second = try Daemon(arguments: arguments)
        defer { second.terminate() }
        try second.waitUntilReady()
        for (index, id) in ids.enumerated() {
            var job: [String: Any] = [:]
            try poll {
                job = try http("GET", second.port, "/jobs/\(id)").json
                return job["status"] as? String == "succeeded"
            }
            XCTAssertEqual(job["status"] as? String, "succeeded", "job \(index): \(job)")
            let count = (job["params"] as? [String: Any])?["n"] as? Int ?? 1
            for image in 0..<count {
                // Within one 8-bit level of the solo image (SamplingBatch.maxPixelDifference: the
                // matrix libraries' summation order depends on the batch).
                let batched = try PNG.decode(Data(try http("GET", second.port, "/jobs/\(id)/image.png?i=\(image)").body))
                let solo = try PNG.decode(Data(reference[index][image]))
                XCTAssertEqual(batched.width, solo.width)
                let difference = zip(batched.pixels, solo.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
                print("batching identity [daemon job \(index) image \(image)]: max pixel difference \(difference)")
                XCTAssertLessThanOrEqual(difference, 1, "job \(index) image \(image): batched after the restart vs solo")
            }
        }
    }

    /// Runs `queries` on a fresh daemon and returns every job's images.
    private func runToCompletion(_ queries: [String], state: URL) throws -> [[[UInt8]]] {
        let daemon = try Daemon(arguments: ["serve", "--checkpoints", checkpoints.path, "--port", "0",
                                            "--state-dir", state.path, "--workers", "1", "--threads", "1"])
        defer { daemon.terminate() }
        try daemon.waitUntilReady()
        var images: [[[UInt8]]] = []
        for query in queries {
            let id = try http("POST", daemon.port, "/generate?\(query)").json["id"] as! String
            var job: [String: Any] = [:]
            try poll {
                job = try http("GET", daemon.port, "/jobs/\(id)").json
                return job["status"] as? String == "succeeded"
            }
            XCTAssertEqual(job["status"] as? String, "succeeded")
            let count = (job["params"] as? [String: Any])?["n"] as? Int ?? 1
            images.append(try (0..<count).map { try http("GET", daemon.port, "/jobs/\(id)/image.png?i=\($0)").body })
            XCTAssertNoThrow(try PNG.decode(Data(images.last![0])))
        }
        return images
    }
}

/// A `rind` subprocess whose stderr is collected; its port is read from the "listening on" line.
final class Daemon: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var collected = ""
    private(set) var port = 0

    var pid: Int32 { process.processIdentifier }
    var output: String { lock.withLock { collected } }

    /// `launcher`: a command that ends by exec'ing its arguments, the binary and `arguments` (so
    /// `pid` is still rind's), to run it in another environment; empty = run it directly.
    init(arguments: [String], environment: [String: String] = [:], waitForPort: Bool = true,
         launcher: [String] = []) throws {
        let command = launcher + [DaemonProcessTests.binary.path] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            .filter { $0.key != "NOTIFY_SOCKET" || environment["NOTIFY_SOCKET"] != nil }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.collected += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
        if waitForPort {
            poll {
                if let range = output.range(of: #"listening on http://127\.0\.0\.1:(\d+)|listening on http://0\.0\.0\.0:(\d+)"#,
                                            options: .regularExpression) {
                    port = Int(output[range].split(separator: ":").last ?? "") ?? 0
                    return true
                }
                return !process.isRunning
            }
        }
    }

    /// Polls /readyz until it answers 200.
    func waitUntilReady() throws {
        let ready = poll { port > 0 && (try? http("GET", port, "/readyz"))?.status == 200 }
        if !ready { XCTFail("rind never became ready:\n\(output)") }
    }

    func waitForExit() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    func terminate() {
        if process.isRunning {
            kill(pid, SIGTERM)
            process.waitUntilExit()
        }
    }
}

/// A datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let fd: Int32
    /// The NOTIFY_SOCKET value: a path, or "@name" for an abstract socket.
    let address: String

    init(abstract: Bool, directory: URL? = nil) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        let name = abstract ? "@rind-test-\(UUID().uuidString.prefix(12))"
            : (directory ?? FileManager.default.temporaryDirectory).appendingPathComponent("notify-\(UUID().uuidString.prefix(8))").path
        address = name
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let result = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        XCTAssertEqual(result, 0, "bind \(name): errno \(errno)")
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Messages received until one contains `marker` (bounded: gives up after 120 empty seconds).
    func receive(until marker: String) -> String {
        var received = ""
        for _ in 0..<120 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received += String(decoding: buffer[0..<count], as: UTF8.self) + "\n"
                if received.contains(marker) { return received }
            }
        }
        return received
    }
}
