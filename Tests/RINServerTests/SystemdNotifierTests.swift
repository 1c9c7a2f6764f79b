import Foundation
import RINServer
import XCTest

/// sd_notify without libsystemd: datagrams on a path or an abstract socket.
final class SystemdNotifierTests: XCTestCase {
    func testNotifiesAPathSocketAndAnAbstractSocket() throws {
        for abstract in [false, true] {
            let directory = Fixtures.temporaryDirectory("rind-notify")
            defer { try? FileManager.default.removeItem(at: directory) }
            let socket = try NotifySocket(abstract: abstract, directory: directory)
            let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.address])
            XCTAssertEqual(notifier.socketPath, socket.address)
            XCTAssertTrue(notifier.notify("READY=1\nSTATUS=test"))
            XCTAssertTrue(socket.receive(until: "READY=1").contains("STATUS=test"))
        }
    }

    func testWithoutASocketNothingIsSent() {
        XCTAssertNil(SystemdNotifier(environment: [:]).socketPath)
        XCTAssertFalse(SystemdNotifier(environment: [:]).notify("READY=1"))
        XCTAssertFalse(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/socket"]).notify("READY=1"))
    }

    func testWatchdogIntervalIsHalfOfWatchdogUsec() {
        XCTAssertEqual(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000"]), .seconds(30))
        XCTAssertNil(SystemdNotifier.watchdogInterval(environment: [:]))
        XCTAssertNil(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"]))
        XCTAssertNil(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"]))
        let own = String(ProcessInfo.processInfo.processIdentifier)
        XCTAssertEqual(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": own]),
                       .microseconds(500))
    }
}

/// Route matching: templates, 404 versus 405, HEAD via GET, trailing slashes.
final class RouterTests: XCTestCase {
    func testMatching() {
        var router = Router()
        router.add("GET", "/jobs/{id}") { _, parameters in HTTPResponse(status: 200, body: .bytes(Array((parameters["id"] ?? "").utf8))) }
        router.add("DELETE", "/jobs/{id}") { _, _ in HTTPResponse(status: 204) }
        router.add("GET", "/jobs/{id}/image.png") { _, _ in HTTPResponse(status: 200) }
        guard case .handler(let route, let handler, let parameters) = router.match(method: "GET", path: "/jobs/abc") else {
            return XCTFail("no match")
        }
        XCTAssertEqual(route.template, "/jobs/{id}")
        XCTAssertEqual(parameters["id"], "abc")
        guard case .bytes(let body) = handler(HTTPRequest(method: "GET", path: "/jobs/abc"), parameters).body else {
            return XCTFail("no body")
        }
        XCTAssertEqual(String(decoding: body, as: UTF8.self), "abc")
        if case .handler = router.match(method: "HEAD", path: "/jobs/abc/") {} else { XCTFail("HEAD and a trailing slash") }
        guard case .methodNotAllowed(let denied) = router.match(method: "POST", path: "/jobs/abc") else {
            return XCTFail("expected 405")
        }
        XCTAssertEqual(denied.allowedMethods, ["DELETE", "GET", "HEAD"])
        if case .notFound = router.match(method: "GET", path: "/jobs") {} else { XCTFail("expected 404") }
        if case .notFound = router.match(method: "GET", path: "/jobs//image.png") {} else { XCTFail("empty id") }
        if case .notFound = router.match(method: "GET", path: "/jobs/a/b/c") {} else { XCTFail("too deep") }
    }
}
