import Foundation
import RINDiffusion
import RINJobs
import RINModel
import XCTest

/// Test fixtures: the tiny checkpoint (8x8 RGB, 3 classes + null, v-pred, 4 steps by default).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static let tiny: RINCheckpoint = {
        do {
            return try RINCheckpoint.load(from: directory.appendingPathComponent("checkpoints/tiny"))
        } catch {
            fatalError("cannot load Tests/Fixtures/checkpoints/tiny: \(error)")
        }
    }()
}

/// A lossless, deterministic stand-in for the daemon's PNG encoder: a text header then the raw
/// bytes, so a test can compare pixels exactly. Optionally holds previews at a gate, which pins a
/// running job between two steps without any timing.
final class RawEncoder: ImageEncoder, @unchecked Sendable {
    let fileExtension = "raw"
    private let condition = NSCondition()
    private var gateOpen: Bool
    private var entered = 0
    private var failFinalImages = false
    private var failPreviews = false

    init(gated: Bool = false) {
        gateOpen = !gated
    }

    static func bytes(_ image: ImagePixels) -> Data {
        var data = Data("\(image.width) \(image.height) \(image.channels)\n".utf8)
        data.append(contentsOf: image.pixels)
        return data
    }

    func encode(_ image: ImagePixels) throws -> Data {
        if condition.withLock({ failFinalImages }) { throw CocoaError(.fileWriteUnknown) }
        return Self.bytes(image)
    }

    func encodePreview(_ images: [ImagePixels]) throws -> Data {
        condition.lock()
        entered += 1
        condition.broadcast()
        while !gateOpen { condition.wait() }
        let fail = failPreviews
        condition.unlock()
        if fail { throw CocoaError(.fileWriteUnknown) }
        return images.reduce(into: Data()) { $0.append(Self.bytes($1)) }
    }

    /// Waits until `count` previews have reached the gate (in all).
    func waitUntilEntered(_ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: 120)
        while entered < count {
            if !condition.wait(until: deadline) {
                XCTFail("no preview reached the gate", file: file, line: line)
                return
            }
        }
    }

    func open() {
        condition.withLock {
            gateOpen = true
            condition.broadcast()
        }
    }

    func failFinal() { condition.withLock { failFinalImages = true } }
    func failPreview() { condition.withLock { failPreviews = true } }
}

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

/// Reads events until the terminal one; fails the test if none comes.
@discardableResult
func waitForEnd(_ service: JobService, _ id: JobID, file: StaticString = #filePath,
                line: UInt = #line) throws -> JobEvent {
    let subscription = try service.subscribe(id)
    defer { subscription.cancel() }
    while let event = subscription.next(timeout: .seconds(120)) {
        if event.isTerminal { return event }
    }
    XCTFail("job \(id) did not finish", file: file, line: line)
    throw JobError.notFound(id)
}

/// The images of an uninterrupted run with `parameters`, straight from the engine.
func directImages(_ parameters: SamplingParameters) throws -> [Data] {
    let run = try SamplingRun(checkpoint: Fixtures.tiny, parameters: parameters)
    while !run.isFinished { run.step() }
    return run.estimate().map(RawEncoder.bytes)
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

func assertJobError(_ expected: JobError, file: StaticString = #filePath, line: UInt = #line,
                    _ body: () throws -> Void) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual(error as? JobError, expected, file: file, line: line)
    }
}
