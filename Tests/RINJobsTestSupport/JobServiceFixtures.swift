// What the job service's tests share (RINJobsTests, RINClusterTests' cluster-mode tests): the tiny
// fixture checkpoint, a lossless image encoder, the images a run must produce, and waiting on a
// job's end. Kept apart from RINTestSupport, which imports no rind target so that every layer's
// tests may use it; this target needs RINJobs.
import Foundation
import RINDiffusion
import RINJobs
import RINModel
import RINTestSupport
import XCTest

/// Test fixtures: the tiny checkpoint (RINTestSupport's `TestProject.tinyCheckpoint`), loaded once.
public enum Fixtures {
    public static let tiny: RINCheckpoint = {
        do {
            return try RINCheckpoint.load(from: TestProject.tinyCheckpoint)
        } catch {
            fatalError("cannot load Tests/Fixtures/checkpoints/tiny: \(error)")
        }
    }()
}

/// A lossless, deterministic stand-in for the daemon's PNG encoder: a text header then the raw
/// bytes, so a test can compare pixels exactly. Optionally holds previews at a gate, which pins a
/// running job between two steps without any timing.
public final class RawEncoder: ImageEncoder, @unchecked Sendable {
    public let fileExtension = "raw"
    private let condition = NSCondition()
    private var gateOpen: Bool
    private var entered = 0
    private var failFinalImages = false
    private var failPreviews = false

    public init(gated: Bool = false) {
        gateOpen = !gated
    }

    public static func bytes(_ image: ImagePixels) -> Data {
        var data = Data("\(image.width) \(image.height) \(image.channels)\n".utf8)
        data.append(contentsOf: image.pixels)
        return data
    }

    public func encode(_ image: ImagePixels) throws -> Data {
        if condition.withLock({ failFinalImages }) { throw CocoaError(.fileWriteUnknown) }
        return Self.bytes(image)
    }

    public func encodePreview(_ images: [ImagePixels]) throws -> Data {
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
    public func waitUntilEntered(_ count: Int, file: StaticString = #filePath, line: UInt = #line) {
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

    public func open() {
        condition.withLock {
            gateOpen = true
            condition.broadcast()
        }
    }

    public func failFinal() { condition.withLock { failFinalImages = true } }
    public func failPreview() { condition.withLock { failPreviews = true } }
}

/// The images of an uninterrupted run with `parameters`, straight from the engine, as `RawEncoder`
/// writes them.
public func directImages(_ parameters: SamplingParameters) throws -> [Data] {
    let run = try SamplingRun(checkpoint: Fixtures.tiny, parameters: parameters)
    while !run.isFinished { run.step() }
    return run.estimate().map(RawEncoder.bytes)
}

/// Reads `id`'s events until the terminal one and returns it; fails the test if none comes.
@discardableResult
public func waitForEnd(_ service: JobService, _ id: JobID, file: StaticString = #filePath,
                       line: UInt = #line) throws -> JobEvent {
    let subscription = try service.subscribe(id)
    defer { subscription.cancel() }
    return try readToEnd(subscription, file: file, line: line)
}

/// Reads `subscription`'s events until the terminal one and returns it; fails the test (and
/// throws `WaitGaveUp`) if none comes within two minutes of the event before.
@discardableResult
public func readToEnd(_ subscription: JobSubscription, file: StaticString = #filePath,
                      line: UInt = #line) throws -> JobEvent {
    while let event = subscription.next(timeout: .seconds(120)) {
        if event.isTerminal { return event }
    }
    XCTFail("the job did not finish", file: file, line: line)
    throw WaitGaveUp(what: "the job's end")
}

/// Asserts that `body` throws exactly `expected`.
public func assertJobError(_ expected: JobError, file: StaticString = #filePath, line: UInt = #line,
                           _ body: () throws -> Void) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual(error as? JobError, expected, file: file, line: line)
    }
}
