// A real PostgreSQL server for the cluster tests, started by scripts/pg-throwaway.sh in a folder of
// its own on a free loopback port, and removed afterwards.
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ThrowawayPostgres {
    /// The cluster's folder (directly under /tmp: the server runs as user postgres when the tests
    /// run as root, and must reach it).
    let directory: URL
    /// `postgres://rind@127.0.0.1:PORT/rind`: no password in it.
    let url: String
    /// A file holding the password of role `rind`.
    var passwordFile: URL { directory.appendingPathComponent("password") }

    /// Starts a new server (pg-throwaway.sh says so when Debian's postgresql package is missing;
    /// scripts/bootstrap.sh --test installs it).
    init() throws {
        let template = "/tmp/rind-pg.XXXXXX"
        var path = Array(template.utf8CString)
        guard mkdtemp(&path) != nil else { throw CocoaError(.fileWriteUnknown) }
        directory = URL(fileURLWithPath: String(cString: path))
        url = try Self.script("start", directory).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Fast shutdown: clients are disconnected, the data stays.
    func stop() throws { _ = try Self.script("stop", directory) }
    /// Starts it again on the same port.
    func start() throws { _ = try Self.script("start", directory) }

    /// Stops the server and removes its folder.
    func destroy() throws { try Self.script("destroy", directory) }

    /// Runs `scripts/pg-throwaway.sh command directory`; its standard output.
    ///
    /// Spawned and reaped directly (posix_spawn, waitpid): Foundation's `Process.waitUntilExit`
    /// was seen to miss the exit of this script (the server it starts outlives it), hanging the test.
    @discardableResult
    static func script(_ command: String, _ directory: URL) throws -> String {
        let output = URL(fileURLWithPath: directory.path + ".\(command).out")
        let errors = URL(fileURLWithPath: directory.path + ".\(command).err")
        defer {
            try? FileManager.default.removeItem(at: output)
            try? FileManager.default.removeItem(at: errors)
        }
        let script = DeployTests.root.appendingPathComponent("scripts/pg-throwaway.sh").path
        let arguments = ["/bin/bash", "-c", #"exec /bin/bash "$1" "$2" "$3" >"$4" 2>"$5" </dev/null"#, "pg-throwaway",
                         script, command, directory.path, output.path, errors.path]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &argv, environ)
        guard spawned == 0 else { throw ScriptError(message: "cannot start pg-throwaway.sh: errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        let problems = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
        // Exited normally with status 0: the low 7 bits (the signal) and the exit code are zero.
        guard status == 0 else {
            throw ScriptError(message: "pg-throwaway.sh \(command) failed (wait status \(status)): \(problems)")
        }
        return text
    }

    struct ScriptError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}
