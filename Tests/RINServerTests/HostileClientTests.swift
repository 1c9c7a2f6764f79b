import Foundation
import Logging
import RINServer
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What an abusive or careless client sends, against a real server on loopback (issue 12).
final class HostileClientTests: XCTestCase {
    // MARK: Metrics labels

    func testMetricsLabelsComeFromAClosedSet() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        for index in 0..<20 {
            let method = "PROBE\(index)X" + String(repeating: "Q", count: 200)
            _ = try http(method, server.port, "/healthz")
            _ = try http(method, server.port, "/no/such/route/\(index)")
        }
        let metrics = try http("GET", server.port, "/metrics").text
        XCTAssertFalse(metrics.contains("PROBE"), "a client's method string became a label")
        XCTAssertFalse(metrics.contains("/no/such/route"), "a client's path became a label")
        XCTAssertTrue(metrics.contains("method=\"other\""), metrics)
        XCTAssertTrue(metrics.contains("route=\"unmatched\""), metrics)
    }

    // MARK: Slow clients

    func testSlowClientsCannotCrowdOutHealthChecksAndSubmits() throws {
        var limits = HTTPServerLimits()
        limits.maxConnections = 24
        limits.maxConnectionsPerIP = 8
        limits.requestReadTimeoutSeconds = 600   // only crowding cuts them short here
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        // 24 connections from three addresses (each at the per-address limit) that send part of
        // a request head and then nothing: every connection slot is taken.
        var slow: [TestHTTPConnection] = []
        for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            for _ in 0..<8 {
                let connection = try TestHTTPConnection(port: server.port, timeoutSeconds: 60, source: source)
                connection.write(Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8))
                slow.append(connection)
            }
        }
        // A health check and a submit from another address get answers: libmicrohttpd closes
        // connections beyond the limit at once, so the client retries, and the crowded server cuts
        // the slow ones after `crowdedReadTimeoutSeconds`. Without that, every attempt is closed
        // until the slow ones hit the idle timeout (60 s), past these 40 attempts (20 s at least).
        func answered(_ method: String, _ path: String) -> Int? {
            for _ in 0..<40 {
                if let connection = try? TestHTTPConnection(port: server.port, timeoutSeconds: 30) {
                    connection.send(method: method, path: path)
                    if let head = try? connection.readHead() { return head.status }
                }
                usleep(500_000)
            }
            return nil
        }
        XCTAssertEqual(answered("GET", "/healthz"), 200)
        XCTAssertEqual(answered("POST", "/generate?class=0&steps=2"), 202)
        // The slow ones were closed without an answer.
        for connection in slow.prefix(4) {
            XCTAssertThrowsError(try connection.readHead())
        }
    }

    func testTricklingARequestHeadDoesNotExtendTheReadTimeout() throws {
        var limits = HTTPServerLimits()
        limits.requestReadTimeoutSeconds = 2
        limits.connectionTimeoutSeconds = 60
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let connection = try TestHTTPConnection(port: server.port, timeoutSeconds: 90)
        connection.write(Array("GET /healthz HTTP/1.1\r\n".utf8))
        let trickled = TrickleState()
        nonisolated(unsafe) let trickling = connection
        let trickler = Thread {
            // One header byte every 200 ms for 40 s: each resets the idle timer.
            for _ in 0..<200 {
                if trickled.stopped { return }
                trickling.write(Array("X".utf8))
                usleep(200_000)
            }
            trickled.finish()
        }
        trickler.start()
        XCTAssertThrowsError(try connection.readHead(), "the server closes the connection")
        XCTAssertFalse(trickled.finished, "closed only after the client stopped trickling")
        trickled.stop()
    }

    // MARK: HEAD on streams

    func testHeadOnStreamsSendsNoBody() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        for (path, type) in [("/jobs/\(id)/events", "text/event-stream"), ("/jobs/\(id)/stream", "multipart/x-mixed-replace")] {
            let connection = try TestHTTPConnection(port: server.port, timeoutSeconds: 30)
            connection.send(method: "HEAD", path: path, keepAlive: true)
            let head = try connection.readHead()
            XCTAssertEqual(head.status, 200)
            XCTAssertTrue(head.headers["content-type"]?.hasPrefix(type) ?? false, "\(head.headers)")
            // The next response on the same connection starts right after the head.
            connection.send(method: "GET", path: "/healthz", keepAlive: true)
            XCTAssertEqual(try connection.readHead().status, 200, path)
        }
    }

    // MARK: Request targets

    func testManyQueryArgumentsGetAnAnswer() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        let query = (0..<600).map { "a\($0)=1" }.joined(separator: "&")
        let list = try http("GET", server.port, "/jobs?\(query)")
        assertProblem(list, status: 414)
        assertProblem(try http("POST", server.port, "/generate?\(query)"), status: 414)
        // Within the limits it is just an unknown parameter.
        assertProblem(try http("POST", server.port, "/generate?a0=1"), status: 400, parameter: "a0")
        let long = String(repeating: "x", count: 9000)
        assertProblem(try http("GET", server.port, "/jobs?cursor=\(long)"), status: 414)
        XCTAssertEqual(try http("GET", server.port, "/healthz").status, 200)
    }

    func testEncodedNULIsRefused() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        assertProblem(try http("POST", server.port, "/generate?class=0%00junk&steps=2"), status: 400)
        assertProblem(try http("POST", server.port, "/generate?class=0&steps=2%00"), status: 400)
        let id = try server.submit("class=0&steps=2")["id"] as! String
        assertProblem(try http("GET", server.port, "/jobs/\(id)%00"), status: 400)
        XCTAssertEqual(try http("GET", server.port, "/jobs/\(id)").status, 200)
    }

    // MARK: Errors libmicrohttpd would answer itself

    func testOversizeHeadersGetProblemJSON() throws {
        var limits = HTTPServerLimits()
        limits.maxHeaderBytes = 8 * 1024
        let server = try TestServer(limits: limits)
        defer { server.shutdown() }
        let big = String(repeating: "a", count: 16 * 1024)
        assertProblem(try http("GET", server.port, "/healthz", headers: ["X-Padding": big]), status: 431)
    }

    func testUnknownTransferEncodingIsAnsweredAtOnce() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        let connection = try TestHTTPConnection(port: server.port, timeoutSeconds: 30)
        connection.write(Array("POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Type: application/json\r\n\r\n".utf8))
        let head = try connection.readHead()
        XCTAssertEqual(head.status, 501)
        XCTAssertEqual(head.headers["content-type"], "application/problem+json")
    }

    // MARK: Contract rules

    func testNullDuplicateAndEmptyParametersAreRefused() throws {
        let server = try TestServer()
        defer { server.shutdown() }
        let port = server.port
        // JSON null does not erase a value: it is refused.
        let null = try http("POST", port, "/generate?steps=2", headers: ["Content-Type": "application/json"],
                            body: Array(#"{"steps": null}"#.utf8))
        assertProblem(null, status: 400, parameter: "steps")
        // A repeated key is refused in the body and in the query alike.
        let duplicate = try http("POST", port, "/generate", headers: ["Content-Type": "application/json"],
                                 body: Array(#"{"steps": 2, "class": 0, "steps": 3}"#.utf8))
        assertProblem(duplicate, status: 400, parameter: "steps")
        let nested = try http("POST", port, "/generate", headers: ["Content-Type": "application/json"],
                              body: Array(#"{"class": "a\"b", "steps": 2}"#.utf8))
        assertProblem(nested, status: 400, parameter: "class")   // an unknown class, not a repeat
        assertProblem(try http("POST", port, "/generate?steps=2&steps=3"), status: 400, parameter: "steps")
        assertProblem(try http("GET", port, "/jobs?limit=1&limit=2"), status: 400, parameter: "limit")
        // Empty values are errors, not "absent".
        assertProblem(try http("GET", port, "/jobs?status="), status: 400, parameter: "status")
        assertProblem(try http("GET", port, "/jobs?limit="), status: 400, parameter: "limit")
        assertProblem(try http("POST", port, "/generate?class="), status: 400, parameter: "class")
        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        assertProblem(try http("GET", port, "/jobs/\(id)/image.png?i="), status: 400, parameter: "i")
        XCTAssertEqual(try http("GET", port, "/jobs/\(id)/image.png?i=0").status, 200)
    }

    // MARK: Repeated header fields

    /// A field that is not a list, or that frames the body, may not repeat: 400 naming it, before
    /// the API key and the route are looked at. Each of these was served before, with the field's
    /// last value (the other text/plain, another guess at the key, another idempotency key).
    func testRepeatedSingleValuedHeaderFieldsAreRefused() throws {
        let server = try TestServer(apiKey: "sesame")
        defer { server.shutdown() }
        let port = server.port
        let key = "Authorization: Bearer sesame"
        let submit = "POST /generate?class=0&steps=2 HTTP/1.1"
        let list = "GET /jobs HTTP/1.1"
        let json = "Content-Type: application/json"
        let cases: [(field: String, requestLine: String, fields: [String], body: String)] = [
            ("Content-Type", submit, ["Host: x", key, "Content-Type: text/plain", json, "Content-Length: 2"], "{}"),
            ("Authorization", list, ["Host: x", "Authorization: Bearer guess", key], ""),
            ("Authorization", list, ["Host: x", key, "authorization: Bearer sesame"], ""),   // any case, same value
            ("Idempotency-Key", submit, ["Host: x", key, "Idempotency-Key: a", "Idempotency-Key: b"], ""),
            ("Host", list, ["Host: x", "Host: y", key], ""),
            ("Content-Length", submit, ["Host: x", key, json, "Content-Length: 2", "Content-Length: 2"], "{}"),
            ("Transfer-Encoding", submit, ["Host: x", key, json, "Transfer-Encoding: chunked",
                                           "Transfer-Encoding: chunked"], "2\r\n{}\r\n0\r\n\r\n"),
        ]
        for (field, requestLine, fields, body) in cases {
            let result = try http(port, requestLine: requestLine, fields: fields, body: body)
            assertProblem(result, status: 400, parameter: field)
            XCTAssertTrue((result.json["detail"] as? String ?? "").contains(field), result.text)
        }
        // Once each, the same fields are fine.
        let once = try http(port, requestLine: submit, fields: ["Host: x", key, json, "Content-Length: 2",
                                                                 "Idempotency-Key: a"], body: "{}")
        XCTAssertEqual(once.status, 202, once.text)
    }

    /// Other repeated fields reach the handler as one value, joined with ", " in the order sent
    /// (RFC 9110 5.3). If-None-Match, a list the API reads, matches an entity tag on any of its
    /// lines (before, only the last line counted).
    func testRepeatedListHeaderFieldsAreJoinedInOrder() throws {
        let echo = try MicroHTTPDaemon(host: "127.0.0.1", port: 0, limits: HTTPServerLimits(), logger: Logger(label: "test"),
                                       handler: { .text($0.header("accept-encoding") ?? "(none)") },
                                       observer: { _, _, _ in })
        defer { echo.stop() }
        let echoed = try http(echo.port, requestLine: "GET / HTTP/1.1",
                              fields: ["Host: x", "Accept-Encoding: gzip", "accept-encoding: br", "Accept-Encoding: identity"])
        XCTAssertEqual(echoed.text, "gzip, br, identity")

        let server = try TestServer()
        defer { server.shutdown() }
        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        let etag = try XCTUnwrap(try http("GET", server.port, "/jobs/\(id)").header("etag"))
        let cached = try http(server.port, requestLine: "GET /jobs/\(id) HTTP/1.1",
                              fields: ["Host: x", "If-None-Match: \(etag)", "If-None-Match: \"other\""])
        XCTAssertEqual(cached.status, 304, cached.text)
    }

    // MARK: Auth

    func testAuthIsCheckedBeforeRouting() throws {
        let server = try TestServer(apiKey: "sesame")
        defer { server.shutdown() }
        let port = server.port
        assertProblem(try http("GET", port, "/no-such-route"), status: 401)
        assertProblem(try http("PUT", port, "/jobs"), status: 401)
        assertProblem(try http("DELETE", port, "/models"), status: 401)
        let key = ["Authorization": "Bearer sesame"]
        assertProblem(try http("GET", port, "/no-such-route", headers: key), status: 404)
        assertProblem(try http("PUT", port, "/jobs", headers: key), status: 405)
        XCTAssertEqual(try http("GET", port, "/healthz").status, 200)
        assertProblem(try http("POST", port, "/healthz"), status: 405)   // an open route
    }
}

private final class TrickleState: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var halted = false
    var finished: Bool { lock.withLock { done } }
    var stopped: Bool { lock.withLock { halted } }
    func finish() { lock.withLock { done = true } }
    func stop() { lock.withLock { halted = true } }
}
