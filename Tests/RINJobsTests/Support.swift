import Foundation
import RINDiffusion
import RINJobs
import RINJobsTestSupport
import XCTest

/// A wall clock the test moves.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { current } }
    func advance(hours: Double) { lock.withLock { current.addTimeInterval(hours * 3600) } }
}

/// A fresh state directory under the temporary directory, removed at the end of the test.
func makeStateDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("rind-jobs-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

func makeService(_ test: XCTestCase, state: URL, encoder: RawEncoder = RawEncoder(), workers: Int = 1,
                 maxQueue: Int = 16, keepJobs: Int? = 100, keepHours: Double? = nil,
                 previewEvery: Int = 0, clock: TestClock? = nil,
                 beforeStep: (@Sendable (JobID, Int) -> Void)? = nil) throws -> JobService {
    var configuration = JobService.Configuration(
        stateDirectory: state, workers: workers, maxQueue: maxQueue, keepJobs: keepJobs,
        keepHours: keepHours, previewEvery: previewEvery, subscriberBuffer: 64)
    if let clock { configuration.now = { clock.now } }
    configuration.beforeStep = beforeStep
    let service = try JobService(configuration: configuration, models: [Fixtures.tiny], encoder: encoder)
    // Workers hold the service: stop them when the test ends (a no-op if the test drained it).
    test.addTeardownBlock { service.drain(deadline: .zero) }
    return service
}

func serviceImages(_ service: JobService, _ job: JobSnapshot) throws -> [Data] {
    try (0..<job.imageCount).map { try service.image(job.id, index: $0).data }
}

/// Runs `body` on a new thread; the returned group is done when it returns.
func onThread(_ body: @escaping @Sendable () -> Void) -> DispatchGroup {
    let group = DispatchGroup()
    group.enter()
    Thread {
        body()
        group.leave()
    }.start()
    return group
}
