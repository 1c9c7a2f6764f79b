import Foundation
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Several render boxes, one queue (issue 13), with real parts only: a throwaway PostgreSQL server
/// (scripts/pg-throwaway.sh), `rind serve --database` processes of the built binary on the bundled
/// checkpoints, `kill -9`, a database restart. Jobs are held at known steps with each box's
/// `RIND_TEST_HOLD_FILE`, never by timing; every image is compared byte for byte with the same job
/// run by a daemon on a local state directory.
final class ClusterProcessTests: XCTestCase {
    var scratch: URL!
    var postgres: ThrowawayPostgres!
    var boxes: [RindDaemon] = []

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: DeployTests.rindBinary.path),
                          "build the rind product first (scripts/test.sh does)")
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rind-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        postgres = try ThrowawayPostgres()
    }

    override func tearDownWithError() throws {
        for box in boxes { box.kill9() }
        try postgres?.destroy()
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: - The tests

    func testThreeBoxesShareOneQueueAndAKilledBoxsJobIsFinishedElsewhereWithTheSameImage() throws {
        // Box a runs two steps of its job and holds; b and c hold before their first step.
        let (a, b, c) = (try startBox("a", hold: "2"), try startBox("b", hold: "0"), try startBox("c", hold: "0"))
        let all = [a, b, c]

        // Nine jobs, submitted through the three boxes in turn; each box claims one (--workers 1).
        var submitted: [(id: String, query: String)] = []
        for i in 0..<9 {
            let query = "model=cifar10&class=\(i)&seed=\(700 + i)&steps=6&preview_every=0"
            let response = try HTTP.request("POST", all[i % 3].base + "/generate?" + query)
            XCTAssertEqual(response.status, 202, response.text)
            submitted.append((try XCTUnwrap(response.json["id"] as? String), query))
        }
        let running = try waitForRunning(steps: [0, 0, 2], on: b)
        let killed = try XCTUnwrap(running.first { ($0["progress"] as? [String: Any])?["step"] as? Int == 2 }?["id"] as? String,
                                   "no job of box a at step 2 among \(running)")
        XCTAssertEqual(try HTTP.request("GET", b.base + "/jobs?status=queued").json["total"] as? Int, 6)

        // Every box answers for every job, with the same record.
        for job in submitted {
            let answers = try all.map { try HTTP.request("GET", $0.base + "/jobs/\(job.id)") }
            XCTAssertEqual(answers.map(\.status), [200, 200, 200], job.id)
            let params = answers.map { NSDictionary(dictionary: $0.json["params"] as? [String: Any] ?? [:]) }
            XCTAssertEqual(Set(params).count, 1, "boxes disagree on \(job.id)")
        }

        // An idempotency key holds across boxes: the same request through another box is the same
        // job; other parameters under the key are refused wherever they come in.
        let keyed = "model=cifar10&class=3&seed=777&steps=6&preview_every=0"
        let first = try HTTP.request("POST", a.base + "/generate?" + keyed, headers: ["Idempotency-Key": "render-42"])
        let again = try HTTP.request("POST", b.base + "/generate?" + keyed, headers: ["Idempotency-Key": "render-42"])
        let other = try HTTP.request("POST", c.base + "/generate?model=cifar10&class=4&seed=777&steps=6",
                                     headers: ["Idempotency-Key": "render-42"])
        XCTAssertEqual([first.status, again.status, other.status], [202, 202, 422], other.text)
        XCTAssertEqual(again.headers["idempotent-replayed"], "true")
        let keyedID = try XCTUnwrap(first.json["id"] as? String)
        XCTAssertEqual(again.json["id"] as? String, keyedID)
        submitted.append((keyedID, keyed))

        // Box a dies mid-run. b and c are let go; once a's lease expires one of them claims a's
        // job and runs it again from its seed.
        a.kill9()
        try release(b)
        try release(c)
        for job in submitted {
            XCTAssertEqual(try HTTP.waitForEnd(c.base, job.id), "succeeded", job.id)
        }
        let record = try HTTP.request("GET", b.base + "/jobs/\(killed)").json
        XCTAssertEqual(record["attempts"] as? Int, 2, "the killed box's job did not run twice: \(record)")
        let attempts = try submitted.map { try HTTP.request("GET", c.base + "/jobs/\($0.id)").json["attempts"] as? Int ?? 0 }
        XCTAssertEqual(attempts.filter { $0 == 2 }.count, 1, "\(attempts)")

        // The same images as a lone daemon on a local state directory, from either surviving box.
        let reference = try referenceImages(submitted.map(\.query))
        var identical = 0
        for (index, job) in submitted.enumerated() {
            let viaB = try HTTP.request("GET", b.base + "/jobs/\(job.id)/image.png")
            let viaC = try HTTP.request("GET", c.base + "/jobs/\(job.id)/image.png")
            XCTAssertEqual(viaB.status, 200, viaB.text)
            XCTAssertEqual(viaB.body, viaC.body, job.id)
            XCTAssertEqual(viaB.body, reference[index], "\(job.id) (\(job.query)) differs from the local run")
            if viaB.body == reference[index] { identical += 1 }
        }
        let statuses = try submitted.map { try HTTP.request("GET", b.base + "/jobs/\($0.id)").json["status"] as? String }
        let completed = statuses.filter { $0 == "succeeded" }.count
        let lost = statuses.filter { $0 == nil }.count
        print("cluster: 3 boxes, jobs submitted \(submitted.count), completed \(completed), "
              + "re-claimed after kill -9 1, lost \(lost), images identical to a local run \(identical)/\(submitted.count)")
    }

    func testARestartedDatabaseLosesNoJobAndBoxesAnswer503MeanwhileThenReconnect() throws {
        let (a, b) = (try startBox("a", hold: "1"), try startBox("b", hold: "1"))
        var submitted: [(id: String, query: String)] = []
        for i in 0..<4 {
            let query = "model=cifar10&class=\(i + 5)&seed=\(900 + i)&steps=5&preview_every=0"
            let response = try HTTP.request("POST", [a, b][i % 2].base + "/generate?" + query)
            XCTAssertEqual(response.status, 202, response.text)
            submitted.append((try XCTUnwrap(response.json["id"] as? String), query))
        }
        _ = try waitForRunning(steps: [1, 1], on: a)

        try postgres.stop()
        for box in [a, b] {
            let refused = try HTTP.request("POST", box.base + "/generate?model=cifar10&class=1&steps=5")
            XCTAssertEqual(refused.status, 503, refused.text)
            XCTAssertNotNil(refused.headers["retry-after"], "\(refused.headers)")
            XCTAssertEqual(refused.headers["content-type"], "application/problem+json")
            XCTAssertEqual(try HTTP.request("GET", box.base + "/readyz").status, 503)
        }
        // The held runs go on without the database; their results wait for it.
        try release(a)
        try release(b)
        try postgres.start()
        try a.waitUntilReady()
        try b.waitUntilReady()

        let reference = try referenceImages(submitted.map(\.query))
        for (index, job) in submitted.enumerated() {
            XCTAssertEqual(try HTTP.waitForEnd(a.base, job.id), "succeeded", job.id)
            let image = try HTTP.request("GET", b.base + "/jobs/\(job.id)/image.png")
            XCTAssertEqual(image.body, reference[index], "\(job.id) (\(job.query)) differs from the local run")
        }
        XCTAssertEqual(try HTTP.request("GET", a.base + "/jobs").json["total"] as? Int, submitted.count)
    }

    func testAnyBoxCancelsDeletesAndWatchesAJobRunningOnAnother() throws {
        let (a, b) = (try startBox("a", hold: "1"), try startBox("b", hold: "2", extra: ["--max-queue", "2"]))
        var ids: [String] = []
        for i in 0..<4 {
            let response = try HTTP.request("POST", a.base + "/generate?model=cifar10&class=\(i)&seed=\(i)&steps=6")
            XCTAssertEqual(response.status, 202, response.text)
            ids.append(try XCTUnwrap(response.json["id"] as? String))
        }
        let running = try waitForRunning(steps: [1, 2], on: b)
        func runningAt(_ step: Int) throws -> String {
            try XCTUnwrap(running.first { ($0["progress"] as? [String: Any])?["step"] as? Int == step }?["id"] as? String)
        }
        let (onA, onB) = (try runningAt(1), try runningAt(2))
        let queued = ids.filter { $0 != onA && $0 != onB }

        // The queue bound is the cluster's: two queued over both boxes is full for box b, whose
        // limit is 2, although nothing was queued through it.
        let full = try HTTP.request("POST", b.base + "/generate?model=cifar10&class=1&steps=6")
        XCTAssertEqual(full.status, 429, full.text)
        XCTAssertNotNil(full.headers["retry-after"])

        // Box b watches a's job, then cancels it; a stops it before its next step.
        let events = try XCTUnwrap(URL(string: b.base + "/jobs/\(onA)/events"))
        let stream = EventStream(url: events)
        let cancel = try HTTP.request("POST", b.base + "/jobs/\(onA)/cancel")
        XCTAssertTrue([200, 202].contains(cancel.status), cancel.text)
        XCTAssertEqual(cancel.json["cancel_requested"] as? Bool, true, cancel.text)
        try waitUntil("box a learns of the cancel") {
            try HTTP.request("GET", a.base + "/jobs/\(onA)").json["cancel_requested"] as? Bool == true
        }

        // Box a deletes a queued job; b answers 410 for it at once.
        XCTAssertEqual(try HTTP.request("DELETE", a.base + "/jobs/\(queued[0])").status, 204)
        XCTAssertEqual(try HTTP.request("GET", b.base + "/jobs/\(queued[0])").status, 410)

        try release(a)
        XCTAssertEqual(try HTTP.waitForEnd(b.base, onA), "canceled")
        let text = try stream.wait()
        XCTAssertTrue(text.contains("event: snapshot"), text)
        XCTAssertTrue(text.contains("event: canceled"), text)

        // Box a deletes b's running job; b drops it, runs the last queued one, and both answer 410.
        XCTAssertEqual(try HTTP.request("DELETE", a.base + "/jobs/\(onB)").status, 204)
        try release(b)
        XCTAssertEqual(try HTTP.waitForEnd(a.base, queued[1]), "succeeded")
        for box in [a, b] {
            XCTAssertEqual(try HTTP.request("GET", box.base + "/jobs/\(onB)").status, 410)
            XCTAssertEqual(try HTTP.request("GET", box.base + "/jobs/\(onA)").json["status"] as? String, "canceled")
        }
    }

    // MARK: - Boxes

    private var holdFiles: [ObjectIdentifier: URL] = [:]

    /// `rind serve --database` on the bundled checkpoints, one batch slot, a short lease; with
    /// `hold`, its jobs run that many steps and then wait until `release`.
    func startBox(_ name: String, hold: String, extra: [String] = []) throws -> RindDaemon {
        let file = scratch.appendingPathComponent("hold-\(name)")
        try Data(hold.utf8).write(to: file)
        let box = try RindDaemon(
            arguments: ["--checkpoints", TestProject.root.appendingPathComponent("checkpoints").path,
                        "--database", postgres.url, "--database-password-file", postgres.passwordFile.path,
                        "--box-name", name, "--lease-seconds", "3", "--workers", "1", "--threads", "1"] + extra,
            environment: ["RIND_TEST_HOLD_FILE": file.path], directory: scratch)
        boxes.append(box)
        holdFiles[ObjectIdentifier(box)] = file
        return box
    }

    /// Lets the box's jobs run on.
    func release(_ box: RindDaemon) throws {
        if let file = holdFiles[ObjectIdentifier(box)] { try FileManager.default.removeItem(at: file) }
    }

    /// Waits until the cluster's running jobs (asked of `box`) have done exactly `steps` (one
    /// entry per job, in any order: each held where its box's hold file says); their records.
    func waitForRunning(steps: [Int], on box: RindDaemon) throws -> [[String: Any]] {
        var jobs: [[String: Any]] = []
        try waitUntil("jobs running at steps \(steps)") {
            jobs = try HTTP.request("GET", box.base + "/jobs?status=running").json["jobs"] as? [[String: Any]] ?? []
            return jobs.compactMap { ($0["progress"] as? [String: Any])?["step"] as? Int }.sorted() == steps.sorted()
        }
        return jobs
    }

    /// PNG bytes of each query run by one daemon on a local state directory (no database).
    func referenceImages(_ queries: [String]) throws -> [Data] {
        let local = try RindDaemon(
            arguments: ["--checkpoints", TestProject.root.appendingPathComponent("checkpoints").path,
                        "--state-dir", scratch.appendingPathComponent("local").path, "--workers", "1", "--threads", "1"],
            directory: scratch)
        defer { local.stop() }
        return try queries.map { query in
            let response = try HTTP.request("POST", local.base + "/generate?" + query)
            let id = try XCTUnwrap(response.json["id"] as? String, response.text)
            XCTAssertEqual(try HTTP.waitForEnd(local.base, id), "succeeded")
            return try HTTP.request("GET", local.base + "/jobs/\(id)/image.png").body
        }
    }
}

/// A GET of an event stream read to its end on another thread (the stream ends after the job's
/// final event).
final class EventStream: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<String, any Error> = .success("")

    init(url: URL) {
        Thread.detachNewThread { [self] in
            result = Result { try HTTP.request("GET", url.absoluteString).text }
            done.signal()
        }
    }

    func wait() throws -> String {
        done.wait()
        return try result.get()
    }
}
