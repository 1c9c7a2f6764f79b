// LISTEN/NOTIFY: what one box changes, another box hears, without polling.
import Foundation
import RINCluster
import RINJobs
import XCTest

final class NotificationTests: PostgresTestCase, @unchecked Sendable {
    func testAnotherBoxHearsEveryChange() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let heard = EventRecorder()
        b.listen { heard.record($0) }
        // LISTEN is up once a notification sent after it arrives; keep sending until one does.
        var probe: JobRecord?
        for _ in 0..<50 where probe == nil {
            let job = try a.submit(queuedRecord(), maxQueued: 100).record
            if heard.wait(for: 0.2, { $0 == .changed(job.id) }) { probe = job }
        }
        XCTAssertNotNil(probe, "box b never heard box a")

        let job = try a.submit(queuedRecord(model: "imagenet64"), maxQueued: 100).record
        XCTAssertTrue(heard.wait { $0 == .changed(job.id) })
        XCTAssertTrue(heard.wait { $0 == .queued })
        let count = heard.all.count
        var run = try XCTUnwrap(a.claim(models: ["imagenet64"], limit: 1, lease: .seconds(60)).first)
        XCTAssertTrue(heard.waitUntil { $0.count > count }, "a claim is announced")
        for (name, change) in [
            ("progress", { () throws(JobError) in
                run.progress.step = 1
                run.revision += 1
                try a.write(run)
            }),
            ("preview", { () throws(JobError) in try a.writePreview(Data([1]), of: job.id, durable: false) }),
            ("cancel", { () throws(JobError) in _ = try b.requestCancel(job.id) }),
            ("delete", { () throws(JobError) in try b.delete(job.id) }),
        ] as [(String, () throws(JobError) -> Void)] {
            let before = heard.all.filter { $0 == .changed(job.id) }.count
            try change()
            XCTAssertTrue(heard.waitUntil { $0.filter { $0 == .changed(job.id) }.count > before },
                          "\(name) is announced")
        }
        let other = try b.submit(queuedRecord(), maxQueued: 100).record
        XCTAssertTrue(heard.wait { $0 == .changed(other.id) }, "a box hears its own changes too")
        XCTAssertFalse(heard.all.contains(.reconnected), "no reconnect without a loss")
    }

    func testQueuedIsAnnouncedOnRelease() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        let job = try a.submit(queuedRecord(), maxQueued: 100).record
        XCTAssertEqual(try a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).count, 1)
        let heard = EventRecorder()
        b.listen { heard.record($0) }
        var listening = false
        for _ in 0..<50 where !listening {
            let probe = try a.submit(queuedRecord(model: "probe"), maxQueued: 100).record
            listening = heard.wait(for: 0.2) { $0 == .changed(probe.id) }
        }
        XCTAssertTrue(listening)
        let queuedBefore = heard.all.filter { $0 == .queued }.count
        try a.release(job.id)
        XCTAssertTrue(heard.waitUntil { $0.filter { $0 == .queued }.count > queuedBefore })
    }
}
