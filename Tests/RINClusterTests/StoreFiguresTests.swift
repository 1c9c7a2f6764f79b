// How long the store's calls take on loopback, printed (not asserted: the machine is shared): a
// job's life as one box sees it, with what each step must leave behind checked.
import Foundation
import RINCluster
import RINJobs
import XCTest

final class StoreFiguresTests: PostgresTestCase, @unchecked Sendable {
    func testPrintsCallLatenciesOfAJobsLife() throws {
        let a = try makeStore(box: "a")
        let b = try makeStore(box: "b")
        var figures: [(String, Double)] = []
        func measure<T>(_ name: String, _ count: Int, _ body: (Int) throws -> T) rethrows -> [T] {
            let start = ContinuousClock.now
            let results = try (0..<count).map(body)
            figures.append((name, (ContinuousClock.now - start).seconds / Double(count) * 1000))
            return results
        }
        let jobs = try measure("submit", 100) { index in
            try a.submit(queuedRecord(seed: UInt64(index)), maxQueued: 1000).record
        }
        _ = try measure("fetch (other box)", 100) { index in try b.fetch(jobs[index].id) }
        _ = try measure("queuePosition", 100) { index in try b.queuePosition(of: jobs[index].id) }
        _ = try measure("list 20", 50) { _ in try b.list(status: nil, limit: 20, offset: 0) }
        let claimed = try measure("claim 1", 50) { _ in
            try XCTUnwrap(a.claim(models: ["cifar10"], limit: 1, lease: .seconds(60)).first)
        }
        var run = claimed[0]
        _ = try measure("write (progress)", 200) { step in
            run.progress.step = step % run.progress.steps
            run.revision += 1
            try a.write(run)
        }
        let preview = Data(count: 3 * 64 * 64)
        _ = try measure("writePreview 12 KB", 100) { _ in try a.writePreview(preview, of: run.id, durable: false) }
        _ = try measure("renew 50", 50) { _ in try a.renew(claimed.map(\.id), lease: .seconds(60)) }
        XCTAssertEqual(try b.fetch(run.id).revision, run.revision)
        XCTAssertEqual(try b.fetch(run.id).progress.step, run.progress.step)
        XCTAssertEqual(try b.queuedCount(), 50)
        print("store figures (ms per call, loopback PostgreSQL, \(ProcessInfo.processInfo.activeProcessorCount) cores):")
        for (name, milliseconds) in figures {
            print("  \(name): \(String(format: "%.2f", milliseconds))")
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
