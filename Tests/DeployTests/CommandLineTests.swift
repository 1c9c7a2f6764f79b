import Foundation
import RINTestSupport
import XCTest

/// `rind sample` as a user runs it: the built binary, the bundled checkpoint, a real PNG written, and
/// exit status 2 with one line on stderr for every kind of bad argument.
final class CommandLineTests: XCTestCase {
    func rind(_ arguments: [String], environment: [String: String] = [:], input: String? = nil) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try runRind(arguments, environment: environment, input: input)
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: DeployTests.rindBinary.path),
                          "build the rind product first (scripts/test.sh does)")
    }

    func testBadArgumentsExitTwoWithOneLine() throws {
        let cases: [[String]] = [
            ["sample", "--bogus"],                                    // unknown option
            ["sample", "--steps", "abc"],                             // malformed value
            ["sample", "--class", "unicorn", "-o", "/tmp/x.png"],     // unknown class name
            ["sample", "--class", "10", "-o", "/tmp/x.png"],          // class out of range
            ["sample", "--steps", "0", "-o", "/tmp/x.png"],           // steps out of range
            ["sample", "--sampler", "euler", "-o", "/tmp/x.png"],     // unknown sampler
            ["sample", "--checkpoint", "/nonexistent", "-o", "/tmp/x.png"],
        ]
        for arguments in cases {
            let result = try rind(arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(arguments) printed:\n\(result.stderr)")
        }
    }

    /// `rind serve --database ...`: a password in the URL, a wrong scheme, a lease out of range or
    /// a password file without a database are refused before anything starts, with one line.
    func testServeRefusesBadDatabaseArguments() throws {
        let cases: [(arguments: [String], says: String)] = [
            (["--database", "postgres://rind:secret@127.0.0.1/rind"], "must not hold a password"),
            (["--database", "mysql://rind@127.0.0.1/rind"], "postgres://"),
            (["--database", "postgres://rind@127.0.0.1/rind", "--lease-seconds", "1"], "--lease-seconds"),
            (["--database-password-file", "/nonexistent"], "needs --database"),
            (["--database", "postgres://rind@127.0.0.1/rind", "--box-name", "two words"], "--box-name"),
        ]
        for (arguments, says) in cases {
            let result = try rind(["serve", "--port", "0"] + arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(arguments) printed:\n\(result.stderr)")
            XCTAssertTrue(result.stderr.contains(says), "\(arguments) printed:\n\(result.stderr)")
            XCTAssertFalse(result.stderr.contains("secret"), "the password is not repeated")
        }
    }

    /// The engine's environment knobs: an unknown RIND_CPU_ISA or RIND_MATMUL is refused with one
    /// line (exit 2) before anything runs, and RIND_CPU_ISA=avx2 makes a bench row run the AVX2
    /// kernels (on the packed backend, an AVX2-only CPU's automatic one); baseline, the portable ones.
    func testEngineEnvironmentIsCheckedAndRINDCPUISACapsThePaths() throws {
        for (name, value) in [("RIND_CPU_ISA", "sse9"), ("RIND_MATMUL", "cuda")] {
            let result = try rind(["sample", "--steps", "1", "-o", "/tmp/never.png"], environment: [name: value])
            XCTAssertEqual(result.status, 2, "\(name)=\(value): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(name)=\(value) printed:\n\(result.stderr)")
            XCTAssertTrue(result.stderr.contains(name) && result.stderr.contains(value), result.stderr)
        }
        let row = ["bench", "--row", "cifar10-bundled:1", "--threads", "1", "--warmup", "0", "--repeats", "1"]
        let capped = try rind(row, environment: ["RIND_CPU_ISA": "avx2"])
        XCTAssertEqual(capped.status, 0, capped.stderr)
        let figures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(capped.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(figures["kernels"] as? String, "avx2")
        XCTAssertEqual(figures["matmul"] as? String, "packed", "an AVX2-only CPU's automatic backend")
        let automatic = try rind(row, environment: ["RIND_CPU_ISA": "baseline"])
        XCTAssertEqual(automatic.status, 0, automatic.stderr)
        let fallback = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(automatic.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(fallback["matmul"] as? String, "openblas", "a CPU without AVX2 takes OpenBLAS")
        let baseline = try rind(row, environment: ["RIND_CPU_ISA": "baseline", "RIND_MATMUL": "packed"])
        XCTAssertEqual(baseline.status, 0, baseline.stderr)
        let portable = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(baseline.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(portable["kernels"] as? String, "baseline")
        XCTAssertEqual(portable["matmul"] as? String, "packed")
    }

    /// `rind bench --cpuid-mask baseline`: every row's process sees a CPUID without AVX, so rind's
    /// row takes the portable kernels and OpenBLAS (what such a CPU gets), and torch's (when the
    /// test venv has torch) reports no vector extension; a bad mask is refused with one line.
    func testBenchCPUIDMaskHoldsEveryEngineToTheNarrowerCPU() throws {
        let refused = try rind(["bench", "--cpuid-mask", "avx3"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--cpuid-mask"), refused.stderr)

        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        try XCTSkipUnless(cpuinfo.contains(" cpuid_fault"), "this CPU or kernel has no CPUID faulting")
        let library = DeployTests.rindBinary.deletingLastPathComponent().appendingPathComponent("librind-cpuid-mask.so")
        XCTAssertTrue(FileManager.default.fileExists(atPath: library.path),
                      "build it first: swift build -c release --product rind-cpuid-mask (scripts/test.sh does)")
        var arguments = ["bench", "--configs", "cifar10-bundled", "--batches", "1", "--threads", "1",
                         "--warmup", "0", "--repeats", "1", "--cpuid-mask", "baseline"]
        let python = try testPython()
        let hasTorch = try runProcess(python, ["-c", "import torch"]).status == 0
        if hasTorch { arguments += ["--torch", python] }
        let result = try rind(arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("masked to baseline"), result.stdout)
        XCTAssertTrue(result.stdout.contains("- rind: matmul openblas, row kernels baseline"), result.stdout)
        if hasTorch { XCTAssertTrue(result.stdout.contains("- torch: torch's CPU capability DEFAULT"), result.stdout) }
    }

    /// `rind bench` run as a bare name found on PATH, from another directory (as an installed
    /// rind is): its row processes are this executable, not "rind" in the current directory.
    func testBenchRunsFromPATH() throws {
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("rind-path-\(UUID())")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let binDirectory = DeployTests.rindBinary.deletingLastPathComponent().path
        let path = [binDirectory, ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].joined(separator: ":")
        let configs = TestProject.root.appendingPathComponent("Training/configs").path
        let (status, output) = try runProcess(
            "/usr/bin/env", ["PATH=\(path)", "rind", "bench", "--configs", "cifar10-bundled", "--configs-dir", configs,
                             "--batches", "1", "--threads", "1", "--warmup", "0", "--repeats", "1"],
            directory: elsewhere)
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("| cifar10-bundled | 1 |"), output)
    }

    /// A bench row under --lockstep (the child side of `rind bench --interleave steps`): "ready",
    /// then one line of timed steps per "burst S" (one step each for S = 0), then its row's JSON
    /// over the bursts after --warmup; an unknown command ends it with one line, exit 2.
    func testBenchRowTakesBurstsWhenAsked() throws {
        let row = ["bench", "--row", "cifar10-bundled:1", "--lockstep", "--threads", "1", "--warmup", "1", "--repeats", "1"]
        let result = try rind(row, input: "burst 0\nburst 0\nburst 0.05\ndone\n")
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = try result.stdout.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], String($0))
        }
        XCTAssertEqual(lines.count, 5, result.stdout)
        guard lines.count == 5 else { return }
        XCTAssertEqual(lines[0]["ready"] as? Bool, true)
        let bursts = try (1...3).map { try XCTUnwrap(lines[$0]["seconds"] as? [Double], "\(lines[$0])") }
        XCTAssertEqual(bursts[0].count, 1)
        XCTAssertEqual(bursts[1].count, 1)
        XCTAssertGreaterThanOrEqual(bursts[2].reduce(0, +), 0.05, "a burst runs until its steps add up to S")
        XCTAssertTrue(bursts.joined().allSatisfy { $0 > 0 })
        // The row's figures are over the bursts after the first (--warmup 1).
        let timed = (bursts[1] + bursts[2]).sorted()
        XCTAssertEqual(lines[4]["min_seconds"] as? Double, timed.first)
        XCTAssertEqual(lines[4]["config"] as? String, "cifar10-bundled")

        let refused = try rind(row, input: "jump\n")
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("jump"), refused.stderr)
    }

    /// `rind bench --torch PY` (the default --interleave steps): rind's and torch's row processes
    /// take bursts in turn and the table has the burst-pairs column; --interleave and --rounds are
    /// checked first (--rounds with another engine needs --interleave rows; --cross-job keeps it).
    func testBenchTakesTurnsWithAnotherEngine() throws {
        for (arguments, says) in [(["--interleave", "sideways"], "--interleave"), (["--rounds", "2", "--torch", "python3"], "--rounds")] {
            let refused = try rind(["bench"] + arguments)
            XCTAssertEqual(refused.status, 2, refused.stderr)
            XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(says), refused.stderr)
        }
        // --rounds still counts where rounds are what alternate: the cross-job mode.
        let crossJob = try rind(["bench", "--cross-job", "--jobs", "1", "--steps", "1", "--rounds", "2", "--threads", "1"])
        XCTAssertEqual(crossJob.status, 0, crossJob.stderr)
        XCTAssertTrue(crossJob.stdout.contains("| 1 |"), crossJob.stdout)
        let python = try testPython()
        try XCTSkipUnless(try runProcess(python, ["-c", "import torch"]).status == 0, "the test venv has no torch")
        let result = try rind(["bench", "--configs", "cifar10-bundled", "--batches", "1", "--threads", "1",
                               "--warmup", "0", "--repeats", "2", "--torch", python])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("engines take turns"), result.stdout)
        XCTAssertTrue(result.stdout.contains("| burst pairs, rind / torch |"), result.stdout)
        let row = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.hasPrefix("| cifar10-bundled | 1 |") })
        let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        // model, batch, 7 rind cells, then torch: s/step, RSS, ratio, burst pairs, fastest steps.
        XCTAssertEqual(cells.count, 14, String(row))
        for cell in cells.dropFirst(9) { XCTAssertNotNil(Double(cell), "\(cell) in \(row)") }
    }

    func testSampleWritesAPNGFromTheBundledCheckpoint() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("rind-cli-\(UUID()).png")
        defer { try? FileManager.default.removeItem(at: output) }
        let result = try rind(["sample", "--checkpoint", "checkpoints/cifar10", "--class", "dog",
                               "--seed", "7", "--steps", "3", "-o", output.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let png = try Data(contentsOf: output)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // IHDR: width and height are the model's 32 x 32.
        XCTAssertEqual(png[16..<24].map { $0 }, [0, 0, 0, 32, 0, 0, 0, 32])
        XCTAssertTrue(result.stderr.contains("3/3"), "no per-step progress:\n\(result.stderr)")
    }
}

/// Runs the built `rind` in the repository root, with `environment` added to this process's;
/// returns its exit status, standard output and standard error.
func runRind(_ arguments: [String], environment: [String: String] = [:], input: String? = nil) throws
    -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = DeployTests.rindBinary
    process.arguments = arguments
    process.currentDirectoryURL = TestProject.root
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    // Standard output to a file: two pipes read one after the other could fill and block the child.
    let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("rind-stdout-\(UUID())")
    _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outputFile) }
    let output = try FileHandle(forWritingTo: outputFile)
    defer { try? output.close() }
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = output
    let standardInput = Pipe()
    if input != nil { process.standardInput = standardInput }
    try process.run()
    if let input {   // small: fits the pipe's buffer, so the write returns before the child reads
        try standardInput.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        try standardInput.fileHandleForWriting.close()
    }
    let data = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let stdout = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    return (process.terminationStatus, stdout, String(decoding: data, as: UTF8.self))
}
