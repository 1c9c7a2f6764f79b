// The two long-lived responses, fed from a job subscription. The job layer pushes into the
// subscription without waiting (a slow client loses intermediate events, never the final one), and
// these bodies block only their own connection's thread while they wait.
import Foundation
import RINJobs
import RINModel

/// A thread-safe "closed" flag shared by a body and the daemon that may close it.
private final class ClosedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    var isClosed: Bool { lock.withLock { closed } }
    func set() { lock.withLock { closed = true } }
}

/// `GET /jobs/<id>/events`: Server-Sent Events. Event names: `snapshot` (the job now, first on every
/// connection, so a reconnect resumes from a fresh state), `progress`, `preview` (with the PNG's URL),
/// `done`, `error`, `canceled`, `requeued` (the daemon drained; the job runs after restart). A comment
/// line is sent when nothing happened for `keepAlive`, which also finds vanished clients.
final class ServerSentEventsBody: StreamingBody, @unchecked Sendable {
    private let subscription: JobSubscription
    private let config: RINConfig?
    private let keepAlive: Duration
    private let closed = ClosedFlag()
    private var sentRetry = false
    private var finished = false

    init(subscription: JobSubscription, config: RINConfig?, keepAlive: Duration) {
        self.subscription = subscription
        self.config = config
        self.keepAlive = keepAlive
    }

    func nextChunk() -> [UInt8]? {
        if finished || closed.isClosed { return nil }
        if !sentRetry {
            sentRetry = true
            return Array("retry: 2000\n\n".utf8)
        }
        guard let event = subscription.next(timeout: keepAlive) else {
            if closed.isClosed || subscription.isFinished { return nil }
            return Array(": keep-alive\n\n".utf8)
        }
        let finishesStream = event.isTerminal
        let name: String
        var data: String
        switch event.kind {
        case .snapshot:
            name = "snapshot"
            data = Self.json(JobBody(event.job, config: config))
        case .progress:
            name = "progress"
            data = Self.json(JobBody(event.job, config: config))
        case .preview:
            name = "preview"
            let step = event.preview?.step ?? event.job.previewStep ?? event.job.progress.step
            data = Self.json(PreviewEvent(url: "/jobs/\(event.job.id.rawValue)/preview.png?step=\(step)", step: step,
                                          steps: event.job.progress.steps))
        case .succeeded:
            name = "done"
            data = Self.json(JobBody(event.job, config: config))
        case .failed:
            name = "error"
            data = Self.json(JobBody(event.job, config: config))
        case .canceled:
            name = "canceled"
            data = Self.json(JobBody(event.job, config: config))
        case .requeued:
            name = "requeued"
            data = Self.json(JobBody(event.job, config: config))
        }
        if finishesStream { finished = true }
        data = data.replacingOccurrences(of: "\n", with: "")
        return Array("id: \(event.job.revision)\nevent: \(name)\ndata: \(data)\n\n".utf8)
    }

    func close() {
        closed.set()
        subscription.cancel()
    }

    struct PreviewEvent: Encodable { let url: String, step: Int, steps: Int }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// `GET /jobs/<id>/stream`: `multipart/x-mixed-replace` with one `image/png` part per preview,
/// ending with the final image (image `index` of the job) and the closing boundary.
final class PreviewStreamBody: StreamingBody, @unchecked Sendable {
    static let boundary = "rind-preview-frame"

    private let subscription: JobSubscription
    private let finalImage: @Sendable () -> Data?
    private let closed = ClosedFlag()
    private var finished = false
    private var lastStep = -1

    /// `finalImage` fetches the result once the job succeeded.
    init(subscription: JobSubscription, finalImage: @escaping @Sendable () -> Data?) {
        self.subscription = subscription
        self.finalImage = finalImage
    }

    func nextChunk() -> [UInt8]? {
        while !finished && !closed.isClosed {
            guard let event = subscription.next(timeout: .seconds(1)) else {
                if subscription.isFinished { finished = true; return Self.closing }
                continue
            }
            switch event.kind {
            case .snapshot where event.job.status == .succeeded, .succeeded:
                finished = true
                guard let data = finalImage() else { return Self.closing }
                return Self.part(data, step: event.job.progress.steps) + Self.closing
            case .snapshot where event.job.status.isFinished, .failed, .canceled, .requeued:
                finished = true
                return Self.closing
            case .snapshot, .preview:
                guard let preview = event.preview, preview.step != lastStep else { continue }
                lastStep = preview.step
                return Self.part(preview.data, step: preview.step)
            case .progress:
                continue
            }
        }
        return nil
    }

    func close() {
        closed.set()
        subscription.cancel()
    }

    private static var closing: [UInt8] { Array("--\(boundary)--\r\n".utf8) }

    private static func part(_ png: Data, step: Int) -> [UInt8] {
        let head = "--\(boundary)\r\nContent-Type: image/png\r\nContent-Length: \(png.count)\r\nX-Step: \(step)\r\n\r\n"
        return Array(head.utf8) + Array(png) + Array("\r\n".utf8)
    }
}
