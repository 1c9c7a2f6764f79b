import Foundation
import Logging
import RINServer
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The libmicrohttpd daemon's lifetime: binding the listening socket, and who closes it, when.
final class DaemonLifetimeTests: XCTestCase {
    private func startDaemon(host: String = "127.0.0.1", port: Int = 0) throws -> MicroHTTPDaemon {
        try MicroHTTPDaemon(host: host, port: port, limits: HTTPServerLimits(), logger: Logger(label: "test"),
                            handler: { _ in HTTPResponse(status: 204) }, observer: { _, _, _ in })
    }

    /// A name binds, whatever it resolves to ("localhost": 127.0.0.1, and ::1 on many machines).
    /// A host whose first address is taken binds the next: DaemonProcessTests, which makes such a
    /// name in a private hosts file.
    func testLocalhostBinds() throws {
        let daemon = try startDaemon(host: "localhost")
        XCTAssertGreaterThan(daemon.port, 0)
        daemon.stop()
    }

    /// A port taken on every address the host resolves to: the error names the host and the port
    /// and says why the last address failed.
    func testPortTakenOnEveryAddressIsAClearError() throws {
        let ipv4 = try XCTUnwrap(HeldPort(address: "127.0.0.1", port: 0))
        let ipv6 = HeldPort(address: "::1", port: ipv4.port)   // where localhost is also ::1
        defer { withExtendedLifetime(ipv6) {} }
        XCTAssertThrowsError(try startDaemon(host: "localhost", port: ipv4.port)) { error in
            XCTAssertEqual(error as? HTTPServerError,
                           .socket(host: "localhost", port: ipv4.port, operation: "bind", errno: EADDRINUSE))
            XCTAssertEqual("\(error)", "cannot listen on localhost:\(ipv4.port): bind failed: Address already in use")
        }
    }

    /// `MHD_stop_daemon` closes the listening socket itself. Nothing may close that descriptor
    /// number again: from that moment another thread's `open` may get the same number, and a
    /// second `close` would take its file away. The hook plays that other thread.
    func testStopClosesTheListeningSocketExactlyOnce() throws {
        let daemon = try startDaemon()
        let seen = LockedValue<(fd: Int32, closedByMHD: Bool)?>(nil)
        daemon.didStopMHD = { fd in
            let closedByMHD = fcntl(fd, F_GETFD) == -1 && errno == EBADF
            let file = open("/dev/null", O_RDONLY)
            if file != fd {
                dup2(file, fd)
                close(file)
            }
            seen.value = (fd, closedByMHD)
        }
        daemon.stop()
        let (fd, closedByMHD) = try XCTUnwrap(seen.value, "the hook ran")
        XCTAssertTrue(closedByMHD, "MHD_stop_daemon closes the listening socket")
        XCTAssertNotEqual(fcntl(fd, F_GETFD), -1,
                          "stop() closed descriptor \(fd) again, taking the file opened after MHD_stop_daemon")
        close(fd)
        daemon.stop()   // idempotent: closes nothing
    }
}
