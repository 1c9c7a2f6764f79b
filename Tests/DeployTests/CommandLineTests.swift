import Foundation
import XCTest

/// `rind sample` as a user runs it: the built binary, the bundled checkpoint, a real PNG written, and
/// exit status 2 with one line on stderr for every kind of bad argument.
final class CommandLineTests: XCTestCase {
    func rind(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        try runRind(arguments)
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

/// Runs the built `rind` in the repository root; returns its exit status and standard error.
func runRind(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
    let process = Process()
    process.executableURL = DeployTests.rindBinary
    process.arguments = arguments
    process.currentDirectoryURL = DeployTests.root
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
