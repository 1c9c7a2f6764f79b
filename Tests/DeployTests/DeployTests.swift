import Foundation
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The systemd deployment, held to what the unit really does: `systemd-analyze verify` on the unit,
/// the daemon started with the unit's own `ExecStart` line and a `NOTIFY_SOCKET` this test listens on,
/// and `Deploy/install.sh` run twice into a staging root.
final class DeployTests: XCTestCase {
    /// The `rind` binary of this build configuration: the test runner (`<bin>/rindPackageTests.xctest`)
    /// sits in the same build folder.
    static var rindBinary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("rind")
    }

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("rind-deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: Self.rindBinary.path),
                          "build the rind product first (scripts/test.sh does)")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func unitText() throws -> String {
        try String(contentsOf: TestProject.root.appendingPathComponent("Deploy/rind.service"), encoding: .utf8)
    }

    func testUnitHasTheRequiredSettings() throws {
        let unit = try unitText()
        for line in ["Type=notify", "StateDirectory=rind", "DynamicUser=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes", "Restart=on-failure"] {
            XCTAssertTrue(unit.contains("\n\(line)\n"), "rind.service lacks \(line)")
        }
        XCTAssertNotNil(unit.range(of: #"\nMemoryMax=\d+[KMG]\n"#, options: .regularExpression))
        XCTAssertNotNil(unit.range(of: #"\nTimeoutStopSec=\d+\n"#, options: .regularExpression))
    }

    func testSystemdAnalyzeVerifiesTheUnit() throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            throw XCTSkip("systemd-analyze is not installed (scripts/bootstrap.sh --test installs it)")
        }
        // Point ExecStart at the binary under test; everything else is verified as shipped.
        let unitURL = scratch.appendingPathComponent("rind.service")
        try unitText().replacingOccurrences(of: "/usr/local/bin/rind", with: Self.rindBinary.path)
            .write(to: unitURL, atomically: true, encoding: .utf8)
        let result = try run(analyze, ["verify", unitURL.path])
        XCTAssertEqual(result.status, 0, "systemd-analyze verify failed:\n\(result.output)")
        XCTAssertFalse(result.output.contains("rind.service:"), "warnings about the unit:\n\(result.output)")
    }

    /// Starts the daemon with the unit's ExecStart, the unit's environment defaults and a state dir of
    /// its own, as systemd would, and listens for its sd_notify datagrams.
    func testDaemonStartedLikeTheUnitNotifiesReadyAndStoppingAndExitsZero() throws {
        let unit = try unitText()
        var environment = ProcessInfo.processInfo.environment
        for assignment in try unitEnvironment(unit) { environment[assignment.key] = assignment.value }
        environment["RIND_PORT"] = "0"   // the test may not own 8080
        let stateDir = scratch.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: stateDir, withIntermediateDirectories: true)
        environment["STATE_DIRECTORY"] = stateDir.path

        let argv = try execStart(unit, environment: environment).map {
            $0.replacingOccurrences(of: "/usr/local/bin/rind", with: Self.rindBinary.path)
              .replacingOccurrences(of: "/usr/local/share/rind/checkpoints",
                                    with: TestProject.root.appendingPathComponent("checkpoints").path)
              .replacingOccurrences(of: "/var/lib/rind", with: stateDir.path)
        }
        let socketPath = scratch.appendingPathComponent("notify.sock").path
        let socket = try DatagramSocket(path: socketPath)
        environment["NOTIFY_SOCKET"] = socketPath

        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.environment = environment
        let log = Pipe()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        let ready = socket.receive(until: { $0.contains("READY=1") }, timeout: 120)
        XCTAssertTrue(ready.contains("READY=1"), "no READY=1; got \(ready)")
        kill(process.processIdentifier, SIGTERM)
        let stopping = socket.receive(until: { $0.contains("STOPPING=1") }, timeout: 60)
        XCTAssertTrue(stopping.contains("STOPPING=1"), "no STOPPING=1; got \(stopping)")
        process.waitUntilExit()
        let output = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0, "daemon output:\n\(output)")
    }

    func testInstallScriptIsSafeToRunTwice() throws {
        let stage = scratch.appendingPathComponent("root")
        var environment = ProcessInfo.processInfo.environment
        environment["DESTDIR"] = stage.path
        environment["RIND_BINARY"] = Self.rindBinary.path
        let script = TestProject.root.appendingPathComponent("Deploy/install.sh").path
        let first = try run("/bin/bash", [script], environment: environment)
        XCTAssertEqual(first.status, 0, first.output)
        // The operator's settings survive a second run (an upgrade).
        let envFile = stage.appendingPathComponent("etc/default/rind")
        try "RIND_PORT=9999\n".write(to: envFile, atomically: true, encoding: .utf8)
        let second = try run("/bin/bash", [script], environment: environment)
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertEqual(try String(contentsOf: envFile, encoding: .utf8), "RIND_PORT=9999\n")
        for path in ["usr/local/bin/rind", "usr/local/share/rind/checkpoints/cifar10/config.json",
                     "usr/local/share/rind/web/index.html", "etc/systemd/system/rind.service"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: stage.appendingPathComponent(path).path),
                          "install.sh did not install \(path)")
        }
        let installedUnit = try String(contentsOf: stage.appendingPathComponent("etc/systemd/system/rind.service"),
                                       encoding: .utf8)
        XCTAssertEqual(installedUnit, try unitText())
    }

    /// The fleet route: `install.sh --artifact` refuses a tarball without its checksum file or with a
    /// wrong one, and installs a verified one (binary, checkpoints, contract, unit, docs, VERSION).
    /// Needs the `make dist` tarball, which scripts/test.sh builds and names in RIND_ARTIFACT.
    func testInstallFromTheArtifactChecksTheChecksum() throws {
        let source = try artifact()
        let tarball = scratch.appendingPathComponent(source.lastPathComponent)
        try FileManager.default.copyItem(at: source, to: tarball)
        let sums = URL(fileURLWithPath: tarball.path + ".sha256")
        let stage = scratch.appendingPathComponent("root")
        var environment = ProcessInfo.processInfo.environment
        environment["DESTDIR"] = stage.path
        let script = TestProject.root.appendingPathComponent("Deploy/install.sh").path

        let unverified = try run("/bin/bash", [script, "--artifact", tarball.path], environment: environment)
        XCTAssertNotEqual(unverified.status, 0)
        XCTAssertTrue(unverified.output.contains("no checksum file"), unverified.output)

        try "\(String(repeating: "0", count: 64))  \(tarball.lastPathComponent)\n".write(to: sums, atomically: true, encoding: .utf8)
        let wrong = try run("/bin/bash", [script, "--artifact", tarball.path], environment: environment)
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.output.contains("checksum mismatch"), wrong.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stage.appendingPathComponent("usr/local/bin/rind").path),
                       "nothing may be installed from an unverified tarball")

        try FileManager.default.removeItem(at: sums)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: source.path + ".sha256"), to: sums)
        let verified = try run("/bin/bash", [script, "--artifact", tarball.path], environment: environment)
        XCTAssertEqual(verified.status, 0, verified.output)
        for path in ["usr/local/bin/rind", "usr/local/share/rind/checkpoints/cifar10/model.safetensors",
                     "usr/local/share/rind/openapi.yaml", "usr/local/share/rind/VERSION", "usr/local/share/rind/web/app.js",
                     "usr/local/share/doc/rind/DEPLOY.md", "etc/systemd/system/rind.service", "etc/default/rind"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: stage.appendingPathComponent(path).path),
                          "install.sh --artifact did not install \(path)")
        }
        XCTAssertEqual(try String(contentsOf: stage.appendingPathComponent("etc/systemd/system/rind.service"), encoding: .utf8),
                       try unitText())
        // The installed binary carries its Swift runtime: ldd names no libswift*.
        let ldd = try run("/usr/bin/ldd", [stage.appendingPathComponent("usr/local/bin/rind").path])
        XCTAssertEqual(ldd.status, 0, ldd.output)
        XCTAssertFalse(ldd.output.contains("libswift") || ldd.output.contains("libFoundation"), ldd.output)
        XCTAssertFalse(ldd.output.contains("not found"), ldd.output)
    }

    /// The tarball carries what `rind bench --cpuid-mask` preloads in bin/, beside rind (the bench
    /// looks in the folder of the rind it runs as), linking no Swift library dynamically; where the
    /// CPU has CPUID faulting, the unpacked tree's rind finds it and runs a row held to the baseline
    /// CPU. Needs the `make dist` tarball, which scripts/test.sh builds and names in RIND_ARTIFACT.
    func testTheArtifactCarriesTheCPUIDMaskBesideRind() throws {
        let source = try artifact()
        let unpacked = scratch.appendingPathComponent("unpacked")
        try FileManager.default.createDirectory(at: unpacked, withIntermediateDirectories: true)
        let untar = try run("/bin/tar", ["-xzf", source.path, "-C", unpacked.path])
        XCTAssertEqual(untar.status, 0, untar.output)
        let tree = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: unpacked.path).first, "an empty tarball")
        let bin = unpacked.appendingPathComponent(tree).appendingPathComponent("bin")
        let library = bin.appendingPathComponent("librind-cpuid-mask.so")
        XCTAssertTrue(FileManager.default.fileExists(atPath: library.path), "the tarball has no bin/librind-cpuid-mask.so")
        let ldd = try run("/usr/bin/ldd", [library.path])
        XCTAssertEqual(ldd.status, 0, ldd.output)
        XCTAssertFalse(ldd.output.contains("libswift") || ldd.output.contains("not found"), ldd.output)

        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        try XCTSkipUnless(cpuinfo.contains(" cpuid_fault"), "this CPU or kernel has no CPUID faulting")
        // Run from the repository root, where the bench finds Training/configs.
        let bench = try run(bin.appendingPathComponent("rind").path,
                            ["bench", "--configs", "cifar10-bundled", "--batches", "1", "--threads", "1",
                             "--warmup", "0", "--repeats", "1", "--cpuid-mask", "baseline"])
        XCTAssertEqual(bench.status, 0, bench.output)
        XCTAssertTrue(bench.output.contains("- rind: matmul openblas, row kernels baseline"), bench.output)
    }

    // MARK: - Reading the unit the way systemd does (the subset rind.service uses)

    /// `Environment=` lines: space-separated NAME=VALUE assignments.
    func unitEnvironment(_ unit: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for line in logicalLines(unit) where line.hasPrefix("Environment=") {
            for assignment in line.dropFirst("Environment=".count).split(separator: " ") {
                let parts = assignment.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                result[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
            }
        }
        return result
    }

    /// `ExecStart=` split into words, with `${NAME}` replaced by its value and `$NAME` split into
    /// words (an empty one vanishes), as systemd.service(5) describes.
    func execStart(_ unit: String, environment: [String: String]) throws -> [String] {
        let line = try XCTUnwrap(logicalLines(unit).first { $0.hasPrefix("ExecStart=") })
        var words: [String] = []
        for word in line.dropFirst("ExecStart=".count).split(separator: " ") {
            if word.hasPrefix("${"), word.hasSuffix("}") {
                words.append(environment[String(word.dropFirst(2).dropLast())] ?? "")
            } else if word.hasPrefix("$") {
                words += (environment[String(word.dropFirst())] ?? "").split(separator: " ").map(String.init)
            } else {
                words.append(String(word))
            }
        }
        return words
    }

    /// Lines with backslash continuations joined and comments dropped.
    func logicalLines(_ unit: String) -> [String] {
        unit.replacingOccurrences(of: "\\\n", with: " ")
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.hasPrefix("#") && !$0.isEmpty }
    }

    /// The `make dist` tarball that scripts/test.sh builds and names in RIND_ARTIFACT; skips the
    /// test where it is not set.
    func artifact() throws -> URL {
        guard let artifact = ProcessInfo.processInfo.environment["RIND_ARTIFACT"], !artifact.isEmpty else {
            throw XCTSkip("RIND_ARTIFACT is not set (scripts/test.sh sets it after make dist)")
        }
        return URL(fileURLWithPath: artifact, relativeTo: TestProject.root)
    }

    /// `runProcess` in the repository root.
    func run(_ executable: String, _ arguments: [String],
             environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        try runProcess(executable, arguments, environment: environment, directory: TestProject.root)
    }
}

/// A bound AF_UNIX datagram socket: the receiving end of sd_notify.
final class DatagramSocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            path.utf8CString.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0 else { close(fd); throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    deinit { close(fd) }

    /// Collects datagrams until one satisfies `done` or `timeout` seconds pass; returns them joined.
    func receive(until done: (String) -> Bool, timeout: Double) -> String {
        var received = ""
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { continue }
            let message = String(decoding: buffer[0..<count], as: UTF8.self)
            received += message + "\n"
            if done(message) { break }
        }
        return received
    }
}
