// TEST-ONLY, not a user setting: kept out of `rind serve --help` and the README on purpose.
//
// With `RIND_TEST_HOLD_FILE=<path>` in its environment, `rind serve` makes every worker wait before
// a sampling step while <path> exists. A number in the file lets each job run that many steps
// first (empty: 0). The daemon tests (Tests/RINServerTests/DaemonProcessTests.swift) use it to keep
// a job running, and the jobs behind it queued, for as long as they need, whatever the speed of the
// CPU, and delete the file to let them go. Unset, nothing is installed (`beforeStep` stays nil).
import Foundation
import RINJobs

#if canImport(Glibc)
import Glibc
#endif

struct TestHoldFile {
    static let variable = "RIND_TEST_HOLD_FILE"

    let path: String

    /// nil unless the variable is set to a non-empty path.
    init?(environment: [String: String]) {
        guard let path = environment[Self.variable], !path.isEmpty else { return nil }
        self.path = path
    }

    /// The `JobService.Configuration.beforeStep` hook: polls the file every 5 ms while it holds.
    var hook: @Sendable (JobID, Int) -> Void {
        { [path] _, stepsDone in
            while let contents = FileManager.default.contents(atPath: path) {
                let freeSteps = Int(String(decoding: contents, as: UTF8.self)
                    .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                if stepsDone < freeSteps { return }
                usleep(5_000)
            }
        }
    }
}
