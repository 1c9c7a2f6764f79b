// Running a short command to its end, and the test venv's python (scripts/test-python-env.sh).
import Foundation
import XCTest

/// Runs `executable` with `arguments` until it exits; its exit status and its standard output and
/// standard error together. `environment` replaces the test's own when given; `directory` is the
/// working directory (the test's own when nil).
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                       directory: URL? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The test venv's python (scripts/test-python-env.sh), created on first use; skips only where
/// python3 itself is missing.
public func testPython() throws -> String {
    guard try runProcess("/usr/bin/env", ["sh", "-c", "command -v python3"]).status == 0 else {
        throw XCTSkip("python3 is not installed")
    }
    let script = TestProject.root.appendingPathComponent("scripts/test-python-env.sh").path
    let (status, output) = try runProcess("/bin/sh", [script])
    guard status == 0, let python = output.split(separator: "\n").last.map(String.init) else {
        XCTFail("scripts/test-python-env.sh failed:\n\(output)")
        throw XCTSkip("no test venv")
    }
    return python
}
