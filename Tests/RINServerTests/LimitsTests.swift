import Foundation
import RINServer
import RINTestSupport
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
        // Two open keep-alive connections use up the allowance. The server may not yet have seen
        // the end of a connection the polls above closed, and counts it: open the pair again until
        // both are served (never, if the limit were below 2).
        func served() -> TestHTTPConnection? {
            guard let connection = try? TestHTTPConnection(port: server.port) else { return nil }
            connection.send(method: "GET", path: "/healthz", keepAlive: true)
            return (try? connection.readHead())?.status == 200 ? connection : nil
        }
        var first: TestHTTPConnection?
        var second: TestHTTPConnection?
        XCTAssertTrue(poll {
            (first, second) = (nil, nil)
            first = served()
            second = first.flatMap { _ in served() }
            return second != nil
        }, "two keep-alive connections were never served together")
        // ...so a third is closed without an answer.
        let third = try TestHTTPConnection(port: server.port)
        third.send(method: "GET", path: "/healthz")
        XCTAssertThrowsError(try third.readHead())
        XCTAssertFalse(third.timedOut, "closed by the server, not given up on")
        // Once one closes, a new connection is served again.
        second = nil
        var fourthStatus = 0
        poll {
            if let result = try? http("GET", server.port, "/healthz") { fourthStatus = result.status }
            return fourthStatus == 200
        }
        XCTAssertEqual(fourthStatus, 200)
        _ = first
    }

    func testIdleConnectionsAreClosed() throws {
        var limits = HTTPServerLimits()
        limits.connectionTimeoutSeconds = 1
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let connection = try TestHTTPConnection(port: server.port)
        connection.write(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8))   // never finished
        XCTAssertThrowsError(try connection.readHead(), "the server closes a connection that stays idle")
        XCTAssertFalse(connection.timedOut, "closed by the server after its 1 s, not given up on after 60 s")
    }
}
