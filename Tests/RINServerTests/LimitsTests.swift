import Foundation
import RINServer
import XCTest

/// Connection-level limits enforced through libmicrohttpd's options.
final class LimitsTests: XCTestCase {
    func testOversizeHeadersAreRefused() throws {
        var limits = HTTPServerLimits()
        limits.maxHeaderBytes = 8 * 1024
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let big = String(repeating: "a", count: 16 * 1024)
        let result = try http("GET", server.port, "/healthz", headers: ["X-Padding": big])
        assertProblem(result, status: 431)
        XCTAssertEqual(try http("GET", server.port, "/healthz", headers: ["X-Padding": "small"]).status, 200)
    }

    func testConnectionsPerAddressAreLimited() throws {
        var limits = HTTPServerLimits()
        limits.maxConnectionsPerIP = 2
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        // Two open keep-alive connections use up the allowance (the polling connections above
        // may not be cleaned up yet, so each is retried until served)...
        func served() throws -> TestHTTPConnection? {
            for _ in 0..<200 {
                let connection = try TestHTTPConnection(port: server.port)
                connection.send(method: "GET", path: "/healthz", keepAlive: true)
                if (try? connection.readHead().status) == 200 { return connection }
                usleep(10_000)
            }
            return nil
        }
        let first = try XCTUnwrap(try served())
        var second: TestHTTPConnection? = try XCTUnwrap(try served())
        // ...so a third is closed without an answer.
        let third = try TestHTTPConnection(port: server.port, timeoutSeconds: 10)
        third.send(method: "GET", path: "/healthz")
        XCTAssertThrowsError(try third.readHead())
        // Once one closes, a new connection is served again.
        second = nil
        var fourthStatus = 0
        for _ in 0..<200 where fourthStatus != 200 {
            if let result = try? http("GET", server.port, "/healthz") { fourthStatus = result.status }
            usleep(10_000)
        }
        XCTAssertEqual(fourthStatus, 200)
        _ = first
    }

    func testIdleConnectionsAreClosed() throws {
        var limits = HTTPServerLimits()
        limits.connectionTimeoutSeconds = 1
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let connection = try TestHTTPConnection(port: server.port, timeoutSeconds: 30)
        connection.write(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8))   // never finished
        XCTAssertThrowsError(try connection.readHead(), "the server closes a connection that stays idle")
    }
}
