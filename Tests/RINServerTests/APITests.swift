import Foundation
import RINImage
import RINServer
import RINTestSupport
import XCTest

/// The HTTP API against a real server on loopback with the tiny checkpoint.
final class APITests: XCTestCase {
    var server: TestServer!

    override func setUpWithError() throws {
        server = try TestServer()
    }

    override func tearDown() {
        server?.shutdown()
        server = nil
    }

    var port: Int { server.port }

    func testSubmitPollAndFetchImages() throws {
        let submitted = try http("POST", port, "/generate?class=green&seed=7&steps=6&n=2&preview_every=2")
        XCTAssertEqual(submitted.status, 202, submitted.text)
        let id = try XCTUnwrap(submitted.json["id"] as? String)
        XCTAssertEqual(submitted.header("location"), "/jobs/\(id)")
        let params = try XCTUnwrap(submitted.json["params"] as? [String: Any])
        XCTAssertEqual(params["class"] as? Int, 1)
        XCTAssertEqual(params["class_name"] as? String, "green")
        XCTAssertEqual(params["seed"] as? Int, 7)
        XCTAssertEqual(params["n"] as? Int, 2)

        let done = try server.waitFor(id, ["succeeded"])
        let progress = try XCTUnwrap(done["progress"] as? [String: Any])
        XCTAssertEqual(progress["step"] as? Int, 6)
        XCTAssertEqual(progress["fraction"] as? Double, 1)
        XCTAssertNotNil(done["finished_at"] as? String)
        XCTAssertEqual(done["image_count"] as? Int, 2)

        for index in 0..<2 {
            let image = try http("GET", port, "/jobs/\(id)/image.png?i=\(index)")
            XCTAssertEqual(image.status, 200)
            XCTAssertEqual(image.header("content-type"), "image/png")
            let decoded = try PNG.decode(Data(image.body))
            XCTAssertEqual([decoded.width, decoded.height, decoded.channels], [8, 8, 3])
        }
        assertProblem(try http("GET", port, "/jobs/\(id)/image.png?i=2"), status: 400, parameter: "i")
        assertProblem(try http("GET", port, "/jobs/\(id)/image.png?i=x"), status: 400, parameter: "i")

        let preview = try http("GET", port, "/jobs/\(id)/preview.png")
        XCTAssertEqual(preview.status, 200)
        let grid = try PNG.decode(Data(preview.body))
        XCTAssertGreaterThan(grid.width, 8, "a preview of n=2 shows both images")

        // Same seed and parameters: the same image, byte for byte.
        let again = try server.submit("class=1&seed=7&steps=6&n=2&preview_every=2")["id"] as! String
        try server.waitFor(again, ["succeeded"])
        XCTAssertEqual(try http("GET", port, "/jobs/\(again)/image.png?i=1").body,
                       try http("GET", port, "/jobs/\(id)/image.png?i=1").body)
    }

    func testJSONBodyAndDefaults() throws {
        let result = try postJSON(port, "/generate", ["class": "blue", "seed": 9007199254740991 as UInt64,
                                                      "steps": 3, "sampler": "ddpm", "schedule": "linear",
                                                      "guidance": 0.5, "carry_latents": false])
        XCTAssertEqual(result.status, 202, result.text)
        let params = try XCTUnwrap(result.json["params"] as? [String: Any])
        XCTAssertEqual(params["class"] as? Int, 2)
        XCTAssertEqual(params["sampler"] as? String, "ddpm")
        XCTAssertEqual(params["schedule"] as? String, "linear")
        XCTAssertEqual(params["guidance"] as? Double, 0.5)
        XCTAssertEqual(params["carry_latents"] as? Bool, false)
        XCTAssertTrue(result.text.contains("\"seed\":9007199254740991"), "the largest seed survives exactly")

        // Nothing given: the model's defaults and a recorded random seed.
        let defaults = try http("POST", port, "/generate")
        XCTAssertEqual(defaults.status, 202, defaults.text)
        let resolved = try XCTUnwrap(defaults.json["params"] as? [String: Any])
        XCTAssertNotNil(resolved["seed"] as? NSNumber)
        XCTAssertNotNil(resolved["steps"] as? Int)
    }

    func testImageWhileRunningIs409WithRetryAfter() throws {
        let blocker = try server.startBlocker()
        let result = try http("GET", port, "/jobs/\(blocker)/image.png")
        assertProblem(result, status: 409)
        XCTAssertNotNil(result.header("retry-after").flatMap(Int.init))
        let job = try server.job(blocker)
        XCTAssertEqual(job["status"] as? String, "running")
        XCTAssertNil(job["queue_position"] as? Int)
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()
        try server.waitFor(blocker, ["canceled"])
    }

    func testStreamSendsPreviewsThenTheFinalImage() throws {
        let blocker = try server.startBlocker()
        let id = try server.submit("class=2&seed=5&steps=24&preview_every=2")["id"] as! String
        XCTAssertEqual(try server.job(id)["queue_position"] as? Int, 1)
        let stream = try openStream(port, "/jobs/\(id)/stream")
        XCTAssertEqual(stream.status, 200)
        XCTAssertEqual(stream.headers["content-type"], "multipart/x-mixed-replace; boundary=rind-preview-frame")
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()

        var parts: [(step: Int, body: [UInt8])] = []
        while let part = readPart(stream.reader, boundary: "rind-preview-frame") {
            XCTAssertEqual(part.headers["content-type"], "image/png")
            XCTAssertNoThrow(try PNG.decode(Data(part.body)))
            parts.append((Int(part.headers["x-step"] ?? "") ?? -1, part.body))
        }
        XCTAssertGreaterThanOrEqual(parts.count, 2, "at least one preview, then the final image")
        XCTAssertTrue(parts.dropLast().contains { $0.step > 0 && $0.step < 24 }, "previews during the run: \(parts.map(\.step))")
        XCTAssertEqual(parts.last?.step, 24)
        XCTAssertEqual(parts.last?.body, try http("GET", port, "/jobs/\(id)/image.png").body)
        XCTAssertEqual(parts.map(\.step), parts.map(\.step).sorted(), "previews arrive in order")
    }

    func testServerSentEvents() throws {
        let blocker = try server.startBlocker()
        let id = try server.submit("class=0&seed=9&steps=24&preview_every=3")["id"] as! String
        let stream = try openStream(port, "/jobs/\(id)/events")
        XCTAssertEqual(stream.status, 200)
        XCTAssertEqual(stream.headers["content-type"], "text/event-stream")
        var comments = 0
        let first = try XCTUnwrap(readEvent(stream.reader, comments: &comments))
        XCTAssertEqual(first.name, "snapshot")
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()

        var names: [String] = []
        var previewURL: String?
        while let event = readEvent(stream.reader, comments: &comments) {
            names.append(event.name)
            let object = try JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any] ?? [:]
            if event.name == "preview" { previewURL = object["url"] as? String }
            if event.name == "done" { XCTAssertEqual(object["status"] as? String, "succeeded") }
        }
        XCTAssertEqual(names.last, "done", "events: \(names)")
        XCTAssertTrue(names.contains("progress"), "events: \(names)")
        XCTAssertTrue(names.contains("preview"), "events: \(names)")
        let url = try XCTUnwrap(previewURL)
        XCTAssertTrue(url.hasPrefix("/jobs/\(id)/preview.png"))
        let preview = try http("GET", port, url)
        XCTAssertEqual(preview.status, 200)
        XCTAssertNoThrow(try PNG.decode(Data(preview.body)))

        // A reconnect gets a fresh snapshot, then the final event.
        let again = try openStream(port, "/jobs/\(id)/events")
        var replay: [String] = []
        while let event = readEvent(again.reader, comments: &comments) { replay.append(event.name) }
        XCTAssertEqual(replay, ["snapshot", "done"])
    }

    func testKeepAliveCommentsWhileNothingHappens() throws {
        let blocker = try server.startBlocker()
        // Queued behind the held blocker: nothing happens to it until the gate opens.
        let id = try server.submit("class=0&steps=2")["id"] as! String
        let stream = try openStream(port, "/jobs/\(id)/events")
        var comments = 0
        var events: [String] = []
        while comments == 0, let line = stream.reader.line() {
            if line.hasPrefix(": keep-alive") { comments += 1 }
            if line.hasPrefix("event: ") { events.append(String(line.dropFirst(7))) }
        }
        XCTAssertEqual(comments, 1, "no keep-alive before the stream ended; events: \(events)")
        XCTAssertEqual(events, ["snapshot"], "the job was still queued")
        _ = try http("DELETE", port, "/jobs/\(blocker)")
        server.gate.open()
        XCTAssertEqual(try server.waitFor(id, ["succeeded"])["status"] as? String, "succeeded")
    }

    func testCancelQueuedAndRunningJobs() throws {
        let blocker = try server.startBlocker()
        let queued = try server.submit("class=1&steps=5")["id"] as! String

        let canceled = try http("POST", port, "/jobs/\(queued)/cancel")
        XCTAssertEqual(canceled.status, 200)
        XCTAssertEqual(canceled.json["status"] as? String, "canceled")
        let repeated = try http("POST", port, "/jobs/\(queued)/cancel")
        XCTAssertEqual(repeated.status, 200, "cancel is idempotent")
        XCTAssertEqual(repeated.json["status"] as? String, "canceled")
        assertProblem(try http("GET", port, "/jobs/\(queued)/image.png"), status: 404)

        let running = try http("POST", port, "/jobs/\(blocker)/cancel")
        XCTAssertEqual(running.status, 200)
        XCTAssertEqual(running.json["status"] as? String, "running", "stops after its current step")
        XCTAssertEqual(running.json["cancel_requested"] as? Bool, true)
        server.gate.open()
        let final = try server.waitFor(blocker, ["canceled"])
        let progress = try XCTUnwrap(final["progress"] as? [String: Any])
        XCTAssertLessThan(progress["step"] as? Int ?? .max, progress["steps"] as? Int ?? 0, "stopped before the end")

        // Delete, twice; afterwards the job is gone (410), an unknown one is 404.
        XCTAssertEqual(try http("DELETE", port, "/jobs/\(blocker)").status, 204)
        XCTAssertEqual(try http("DELETE", port, "/jobs/\(blocker)").status, 204)
        assertProblem(try http("GET", port, "/jobs/\(blocker)"), status: 410)
        assertProblem(try http("GET", port, "/jobs/\(blocker)/image.png"), status: 410)
    }

    func testUnknownJobsAndRoutes() throws {
        assertProblem(try http("GET", port, "/jobs/0123456789abcdef"), status: 404)
        assertProblem(try http("GET", port, "/jobs/not-a-job-id"), status: 404)
        assertProblem(try http("POST", port, "/jobs/0123456789abcdef/cancel"), status: 404)
        assertProblem(try http("GET", port, "/jobs/0123456789abcdef/events"), status: 404)
        assertProblem(try http("GET", port, "/jobs/0123456789abcdef/stream"), status: 404)
        assertProblem(try http("GET", port, "/jobs/0123456789abcdef/preview.png"), status: 404)
        assertProblem(try http("GET", port, "/nothing/here"), status: 404)
        assertProblem(try http("GET", port, "/index.html"), status: 404)
    }

    func testMethodNotAllowedListsAllow() throws {
        let cases: [(String, String, String)] = [
            ("GET", "/generate", "POST"), ("PUT", "/jobs/0123456789abcdef", "DELETE, GET, HEAD"),
            ("POST", "/healthz", "GET, HEAD"), ("GET", "/jobs/0123456789abcdef/cancel", "POST"),
            ("DELETE", "/jobs", "GET, HEAD"),
        ]
        for (method, path, allow) in cases {
            let result = try http(method, port, path)
            assertProblem(result, status: 405)
            XCTAssertEqual(result.header("allow"), allow, "\(method) \(path)")
        }
        XCTAssertEqual(try http("HEAD", port, "/healthz").status, 200)
    }

    func testEveryBadParameterIsAProblemNamingIt() throws {
        let cases: [(String, String)] = [
            ("class=3", "class"), ("class=-1", "class"), ("class=purple", "class"), ("steps=0", "steps"),
            ("steps=1001", "steps"), ("steps=ten", "steps"), ("sampler=euler", "sampler"), ("schedule=square", "schedule"),
            ("guidance=-1", "guidance"), ("guidance=abc", "guidance"), ("n=0", "n"), ("n=17", "n"),
            ("seed=-1", "seed"), ("seed=x", "seed"), ("seed=9007199254740992", "seed"), ("preview_every=-2", "preview_every"), ("model=nope", "model"),
            ("colour=red", "colour"), ("carry_latents=maybe", "carry_latents"),
        ]
        for (query, parameter) in cases {
            assertProblem(try http("POST", port, "/generate?\(query)"), status: 400, parameter: parameter)
        }
        // The class range is stated.
        let outOfRange = try http("POST", port, "/generate?class=7")
        XCTAssertTrue((outOfRange.json["detail"] as? String ?? "").contains("0...2"), outOfRange.text)

        let bodies: [([String: Any], String)] = [
            (["class": [1]], "class"), (["steps": 2.5], "steps"), (["n": "many"], "n"), (["extra": 1], "extra"),
            (["guidance": "strong"], "guidance"),
        ]
        for (body, parameter) in bodies {
            assertProblem(try postJSON(port, "/generate", body), status: 400, parameter: parameter)
        }
        let badJSON = try http("POST", port, "/generate", headers: ["Content-Type": "application/json"],
                               body: Array("{\"class\": ".utf8))
        assertProblem(badJSON, status: 400)
        XCTAssertEqual(badJSON.json["type"] as? String, "urn:rind:problem:malformed-json")
        assertProblem(try http("POST", port, "/generate", headers: ["Content-Type": "application/json"],
                               body: Array("[1, 2]".utf8)), status: 400)
        assertProblem(try http("POST", port, "/generate", headers: ["Content-Type": "text/plain"],
                               body: Array("class=1".utf8)), status: 415)
        assertProblem(try http("POST", port, "/generate", headers: ["Idempotency-Key": "has space"]),
                      status: 400, parameter: "Idempotency-Key")
        assertProblem(try http("GET", port, "/jobs?status=finished"), status: 400, parameter: "status")
        assertProblem(try http("GET", port, "/jobs?limit=0"), status: 400, parameter: "limit")
        assertProblem(try http("GET", port, "/jobs?cursor=zzz"), status: 400, parameter: "cursor")
    }

    func testOversizeBodyIs413() throws {
        let big = Array(repeating: UInt8(ascii: " "), count: 70 * 1024)
        assertProblem(try http("POST", port, "/generate", headers: ["Content-Type": "application/json"], body: big),
                      status: 413)
        // Chunked, with no Content-Length: counted while it arrives.
        let connection = try TestHTTPConnection(port: port)
        var request = Array("POST /generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        for _ in 0..<8 {
            request += Array(String(16 * 1024, radix: 16).utf8) + [13, 10] + Array(repeating: UInt8(ascii: " "), count: 16 * 1024) + [13, 10]
        }
        request += Array("0\r\n\r\n".utf8)
        connection.write(request)
        XCTAssertEqual(try connection.readHead().status, 413)
    }

    func testIdempotentRetryReturnsTheSameJob() throws {
        let first = try http("POST", port, "/generate?class=1&steps=3", headers: ["Idempotency-Key": "retry-1"])
        XCTAssertEqual(first.status, 202)
        let second = try http("POST", port, "/generate?class=1&steps=3", headers: ["Idempotency-Key": "retry-1"])
        XCTAssertEqual(second.status, 202)
        XCTAssertEqual(second.json["id"] as? String, first.json["id"] as? String)
        XCTAssertEqual(second.header("idempotent-replayed"), "true")
        XCTAssertNil(first.header("idempotent-replayed"))
        let other = try http("POST", port, "/generate?class=2&steps=3", headers: ["Idempotency-Key": "retry-1"])
        assertProblem(other, status: 422, parameter: "Idempotency-Key")
        let page = try http("GET", port, "/jobs").json
        XCTAssertEqual(page["total"] as? Int, 1)
    }

    func testETagAndIfNoneMatch() throws {
        let id = try server.submit("class=0&steps=3")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        let first = try http("GET", port, "/jobs/\(id)")
        let etag = try XCTUnwrap(first.header("etag"))
        let cached = try http("GET", port, "/jobs/\(id)", headers: ["If-None-Match": etag])
        XCTAssertEqual(cached.status, 304)
        XCTAssertTrue(cached.body.isEmpty)
        XCTAssertEqual(cached.header("etag"), etag)
        XCTAssertEqual(try http("GET", port, "/jobs/\(id)", headers: ["If-None-Match": "\"other\", W/\(etag)"]).status, 304)
        XCTAssertEqual(try http("GET", port, "/jobs/\(id)", headers: ["If-None-Match": "\"stale\""]).status, 200)
        _ = try http("DELETE", port, "/jobs/\(id)")
        XCTAssertEqual(try http("GET", port, "/jobs/\(id)", headers: ["If-None-Match": etag]).status, 410)
    }

    func testQueueFullIs429WithRetryAfter() throws {
        server.shutdown()
        server = try TestServer(maxQueue: 1)
        let blocker = try server.startBlocker()
        _ = try server.submit("class=0&steps=2")
        let full = try http("POST", port, "/generate?class=0&steps=2")
        assertProblem(full, status: 429)
        XCTAssertGreaterThanOrEqual(full.header("retry-after").flatMap(Int.init) ?? 0, 1)
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()
        try server.waitFor(blocker, ["canceled"])
    }

    func testListingNewestFirstFilteredAndPaged() throws {
        var ids: [String] = []
        for seed in 0..<3 {
            let id = try server.submit("class=0&steps=2&seed=\(seed)")["id"] as! String
            ids.append(id)
            try server.waitFor(id, ["succeeded"])
        }
        // Held at the gate until canceled, so it cannot finish first.
        server.gate.close()
        let canceled = try server.submit("class=0&steps=50")["id"] as! String
        _ = try http("POST", port, "/jobs/\(canceled)/cancel")
        server.gate.open()
        try server.waitFor(canceled, ["canceled"])

        let all = try http("GET", port, "/jobs").json
        XCTAssertEqual((all["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String },
                       [canceled] + ids.reversed())
        let succeeded = try http("GET", port, "/jobs?status=succeeded&limit=2").json
        XCTAssertEqual((succeeded["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [ids[2], ids[1]])
        XCTAssertEqual(succeeded["total"] as? Int, 3)
        let cursor = try XCTUnwrap(succeeded["next_cursor"] as? String)
        let next = try http("GET", port, "/jobs?status=succeeded&limit=2&cursor=\(cursor)").json
        XCTAssertEqual((next["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [ids[0]])
        XCTAssertTrue(next["next_cursor"] is NSNull)
        let offset = try http("GET", port, "/jobs?offset=3").json
        XCTAssertEqual((offset["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [ids[0]])
    }

    func testModelsHealthMetricsAndOpenAPI() throws {
        let models = try http("GET", port, "/models").json["models"] as? [[String: Any]]
        let tiny = try XCTUnwrap(models?.first)
        XCTAssertEqual(tiny["name"] as? String, "tiny")
        XCTAssertEqual(tiny["default"] as? Bool, true)
        XCTAssertEqual((tiny["classes"] as? [String: Any])?["names"] as? [String], ["red", "green", "blue"])
        XCTAssertEqual((tiny["image"] as? [String: Any])?["height"] as? Int, 8)

        XCTAssertEqual(try http("GET", port, "/healthz").json["status"] as? String, "ok")
        XCTAssertEqual(try http("GET", port, "/readyz").json["status"] as? String, "ready")

        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        let metrics = try http("GET", port, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.header("content-type")?.hasPrefix("text/plain") ?? false)
        for name in ["rind_http_requests_total{route=\"/generate\",method=\"POST\",status=\"202\"}",
                     "rind_process_resident_memory_bytes", "rind_queue_depth", "rind_jobs_total{outcome=\"succeeded\"}",
                     "rind_step_seconds_bucket", "rind_http_request_duration_seconds_bucket"] {
            XCTAssertTrue(metrics.text.contains(name), "metrics lack \(name)")
        }
        let memoryLine = metrics.text.split(separator: "\n").first { $0.hasPrefix("rind_process_resident_memory_bytes ") }
        XCTAssertGreaterThan(Double(memoryLine?.split(separator: " ").last ?? "") ?? 0, 1_000_000)

        let document = try http("GET", port, "/openapi.yaml")
        XCTAssertEqual(document.status, 200)
        XCTAssertEqual(document.body, Array(try Data(contentsOf: TestProject.root.appendingPathComponent("openapi.yaml"))))
    }

    func testNotReadyUntilAttachedAnswers503() throws {
        let loading = try TestServer(attach: false)
        defer { loading.shutdown() }
        XCTAssertEqual(try http("GET", loading.port, "/healthz").status, 200)
        for (method, path) in [("GET", "/readyz"), ("POST", "/generate"), ("GET", "/jobs"), ("GET", "/models")] {
            let result = try http(method, loading.port, path)
            assertProblem(result, status: 503)
            XCTAssertNotNil(result.header("retry-after").flatMap(Int.init), path)
        }
    }

    func testDrainingIsNotReadyAndRefusesJobsButServesResults() throws {
        let id = try server.submit("class=0&steps=2")["id"] as! String
        try server.waitFor(id, ["succeeded"])
        server.server.beginDrain()
        assertProblem(try http("GET", port, "/readyz"), status: 503)
        let refused = try http("POST", port, "/generate?class=0")
        assertProblem(refused, status: 503)
        XCTAssertNotNil(refused.header("retry-after"))
        XCTAssertEqual(try http("GET", port, "/jobs/\(id)/image.png").status, 200)
    }

    func testSlowReaderNeverBlocksTheWorker() throws {
        server.gate.close()
        let id = try server.submit("class=0&steps=300&preview_every=1")["id"] as! String
        server.gate.waitUntilHeld(id)
        // Two subscribers, there before the first step, that read nothing until the job is over.
        let events = try openStream(port, "/jobs/\(id)/events")
        let stream = try openStream(port, "/jobs/\(id)/stream")
        server.gate.open()
        try server.waitFor(id, ["succeeded"])
        var comments = 0
        var last: String?
        while let event = readEvent(events.reader, comments: &comments) { last = event.name }
        XCTAssertEqual(last, "done")
        var lastPart: (headers: [String: String], body: [UInt8])?
        while let part = readPart(stream.reader, boundary: "rind-preview-frame") { lastPart = part }
        XCTAssertEqual(lastPart?.headers["x-step"], "300")
    }

    func testAPIKeyIsEnforcedWhenConfigured() throws {
        server.shutdown()
        server = try TestServer(apiKey: "s3cret-key")
        assertProblem(try http("GET", port, "/jobs"), status: 401)
        XCTAssertNotNil(try http("GET", port, "/jobs").header("www-authenticate"))
        assertProblem(try http("GET", port, "/jobs", headers: ["Authorization": "Bearer wrong"]), status: 401)
        assertProblem(try http("GET", port, "/jobs", headers: ["Authorization": "Bearer s3cret-ke"]), status: 401)
        assertProblem(try http("GET", port, "/jobs", headers: ["Authorization": "Bearer s3cret-key2"]), status: 401)
        assertProblem(try http("POST", port, "/generate?class=0"), status: 401)
        XCTAssertEqual(try http("GET", port, "/jobs", headers: ["Authorization": "Bearer s3cret-key"]).status, 200)
        XCTAssertEqual(try http("POST", port, "/generate?class=0&steps=1",
                                headers: ["Authorization": "bearer s3cret-key"]).status, 202)
        for open in ["/healthz", "/readyz", "/metrics", "/openapi.yaml"] {
            XCTAssertEqual(try http("GET", port, open).status, 200, open)
        }
    }

    func testNonLoopbackHostRequiresAnAPIKey() throws {
        var configuration = APIServer.Configuration()
        configuration.host = "0.0.0.0"
        configuration.port = 0
        XCTAssertThrowsError(try APIServer(configuration: configuration)) { error in
            XCTAssertEqual(error as? APIServerError, .apiKeyRequired(host: "0.0.0.0"))
            XCTAssertTrue("\(error)".contains("--api-key-file"))
        }
        configuration.apiKey = "k"
        let server = try APIServer(configuration: configuration)
        XCTAssertGreaterThan(server.port, 0)
        server.stop()
        XCTAssertTrue(MicroHTTPDaemon.isLoopback(host: "127.0.0.1"))
        XCTAssertTrue(MicroHTTPDaemon.isLoopback(host: "::1"))
        XCTAssertFalse(MicroHTTPDaemon.isLoopback(host: "0.0.0.0"))
        XCTAssertFalse(MicroHTTPDaemon.isLoopback(host: "::"))

        let keyFile = Fixtures.temporaryDirectory("rind-key").appendingPathComponent("key")
        try "  abc123 \nignored\n".write(to: keyFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try APIServer.readAPIKey(path: keyFile.path), "abc123")
        try "\n".write(to: keyFile, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try APIServer.readAPIKey(path: keyFile.path))
        XCTAssertThrowsError(try APIServer.readAPIKey(path: "/nonexistent/key"))
    }

    func testPortInUseIsAClearError() throws {
        var configuration = APIServer.Configuration()
        configuration.port = port
        XCTAssertThrowsError(try APIServer(configuration: configuration)) { error in
            XCTAssertTrue("\(error)".contains("bind"), "\(error)")
        }
    }
}
