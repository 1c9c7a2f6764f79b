// A real PostgreSQL server for the cluster tests (RINClusterTests, DeployTests' ClusterProcessTests),
// started by scripts/pg-throwaway.sh in a folder of its own on a free loopback port, and removed
// afterwards.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One throwaway PostgreSQL cluster on loopback, in a folder under /tmp (the server runs as user
/// `postgres` when the tests run as root, so the folder must not sit inside a private one).
public final class ThrowawayPostgres: @unchecked Sendable {
    public static let script = TestProject.root.appendingPathComponent("scripts/pg-throwaway.sh")

    /// The cluster's folder.
    public let directory: URL
    /// `postgres://rind@127.0.0.1:PORT/rind`: no password in it.
    public let url: String
    /// The password of role `rind`, which owns database `rind` and every database `createDatabase` makes.
    public let password: String
    /// A file holding the password of role `rind`.
    public var passwordFile: URL { directory.appendingPathComponent("password") }
    private var databases = 0
    private let lock = NSLock()

    /// Starts a new server (pg-throwaway.sh says so when Debian's postgresql package is missing;
    /// scripts/bootstrap.sh --test installs it).
    public init() throws {
        var template = Array("/tmp/rind-pg.XXXXXX".utf8CString)
        guard let path = mkdtemp(&template) else { throw ScriptError(message: "mkdtemp failed: errno \(errno)") }
        directory = URL(fileURLWithPath: String(cString: path))
        url = try Self.run(["start", directory.path]).trimmingCharacters(in: .whitespacesAndNewlines)
        password = try String(contentsOf: directory.appendingPathComponent("password"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A fresh database on this server (named `t1`, `t2`, ...); its URL, with no password in it.
    public func createDatabase() throws -> String {
        let number = lock.withLock { () -> Int in
            databases += 1
            return databases
        }
        do {
            return try Self.run(["createdb", directory.path, "t\(number)"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            let log = (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
            throw ScriptError(message: "\(error)\nserver.log:\n\(log.suffix(2000))")
        }
    }

    /// Fast shutdown: clients are disconnected, the data stays.
    public func stop() throws { _ = try Self.run(["stop", directory.path]) }
    /// Immediate shutdown, as if the server crashed (it recovers on `start()`).
    public func kill() throws { _ = try Self.run(["kill", directory.path]) }
    /// Starts it again on the same port.
    public func start() throws { _ = try Self.run(["start", directory.path]) }

    /// Stops the server and removes its folder.
    public func destroy() throws { _ = try Self.run(["destroy", directory.path]) }

    /// Runs `scripts/pg-throwaway.sh arguments...`; its standard output.
    ///
    /// Spawned and reaped directly (posix_spawn, waitpid), output through files: Foundation's
    /// `Process.waitUntilExit` was seen to miss the exit of this script (the server it starts
    /// outlives it), hanging the test, and under `Process` the server did not always survive the
    /// script.
    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        let base = NSTemporaryDirectory() + "/rind-pg-script-\(UUID().uuidString)"
        let output = base + ".out"
        let errors = base + ".err"
        defer {
            unlink(output)
            unlink(errors)
        }
        let argv = ["/bin/bash", "-c", #"out=$1 err=$2; shift 2; exec /bin/bash "$@" >"$out" 2>"$err" </dev/null"#,
                    "pg-throwaway", output, errors, script.path] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &cArguments, environ)
        guard spawned == 0 else { throw ScriptError(message: "cannot start pg-throwaway.sh: errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        // Exited normally with status 0: the low 7 bits (the signal) and the exit code are zero.
        guard status == 0 else {
            let problems = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw ScriptError(message: "pg-throwaway.sh \(arguments.joined(separator: " ")) failed "
                                + "(wait status \(status)): \(problems)")
        }
        return text
    }

    /// What went wrong in pg-throwaway.sh, with its standard error.
    public struct ScriptError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}
