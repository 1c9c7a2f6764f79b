import Foundation
import RINTestSupport
import XCTest

/// The unit under a real systemd: `scripts/boot-test.sh` debootstraps a Debian 12 root (cached in
/// .nspawn-cache/), installs the `make dist` tarball with `Deploy/install.sh --artifact`, boots it
/// with `systemd-nspawn -b` and checks READY, the status line, a job over HTTP, the DynamicUser
/// state, drain on stop, restart after kill -9 and after a watchdog timeout, and a quiet journal.
/// The script prints every phase; it exits 77 with the reason where it cannot run (not root, no
/// nspawn), which is a skip here.
final class BootTests: XCTestCase {
    func testTheUnitUnderARealSystemd() throws {
        let script = TestProject.root.appendingPathComponent("scripts/boot-test.sh").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script]
        process.currentDirectoryURL = TestProject.root
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Echo as it goes (the script takes minutes), keeping the text for the verdict.
        var output = Data()
        while true {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            FileHandle.standardOutput.write(chunk)
            output.append(chunk)
        }
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self)
        if process.terminationStatus == 77 {
            let reason = text.split(separator: "\n").last { $0.hasPrefix("boot-test: SKIP:") } ?? "skipped"
            throw XCTSkip(String(reason))
        }
        XCTAssertEqual(process.terminationStatus, 0, "scripts/boot-test.sh failed; its output is above")
        XCTAssertTrue(text.contains("boot-test: ") && text.contains("PASS"), "the script did not report PASS")
    }
}
