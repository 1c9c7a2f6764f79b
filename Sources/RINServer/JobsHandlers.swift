// Jobs (openapi.yaml: /generate and /jobs/...): submit, read, list, cancel, delete, and fetch the
// preview, the images and the live streams of one job. Every call into the job service goes
// through `APIServer.mapped`, so job layer errors become problem+json in one place.
import Foundation
import RINJobs
import RINModel

extension APIServer {
    func generate(_ request: HTTPRequest) -> HTTPResponse {
        if currentPhase() == .draining {
            return Problem.unavailable(detail: "the daemon is shutting down and accepts no new jobs",
                                       retryAfter: configuration.unavailableRetryAfter).response
        }
        return withService { service throws(Problem) in
            let values = try GenerateParameters.collect(request)
            let modelName = values["model"]
            let checkpoint: RINCheckpoint
            if let modelName {
                guard let found = service.checkpoint(named: modelName) else {
                    throw Problem.invalidParameter("model", "unknown model '\(modelName)'; loaded: \(service.modelNames.joined(separator: ", "))")
                }
                checkpoint = found
            } else {
                checkpoint = service.defaultModel
            }
            let jobRequest = try GenerateParameters.jobRequest(values, model: modelName, checkpoint: checkpoint)
            let key = request.header("idempotency-key")
            if let key, key.isEmpty || key.utf8.count > 255 || key.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value > 0x7E }) {
                throw Problem.invalidParameter("Idempotency-Key", "the Idempotency-Key header must be 1 to 255 visible ASCII characters")
            }
            let submission = try Self.mapped { () throws(JobError) in
                try service.submit(jobRequest, idempotencyKey: key)
            }
            let job = submission.job
            var headers: [(name: String, value: String)] = [("Location", "/jobs/\(job.id.rawValue)"),
                                                            ("ETag", Self.etag(job)), ("Cache-Control", "no-store")]
            if submission.replayed { headers.append(("Idempotent-Replayed", "true")) }
            return .json(JobBody(job, config: checkpoint.config), status: 202, headers: headers)
        }
    }

    func jobID(_ parameters: Router.Parameters) throws(Problem) -> JobID {
        let text = parameters["id"] ?? ""
        guard let id = JobID(text) else {
            throw Problem.notFound("no job '\(text)' (job ids are 16 hexadecimal characters)")
        }
        return id
    }

    func config(_ service: JobService, _ job: JobSnapshot) -> RINConfig? {
        service.checkpoint(named: job.model)?.config
    }

    func getJob(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let job: JobSnapshot
            job = try Self.mapped { () throws(JobError) in try service.job(id) }
            let etag = Self.etag(job)
            if let match = request.header("if-none-match"), Self.etagMatches(match, etag) {
                return HTTPResponse(status: 304, headers: [("ETag", etag), ("Cache-Control", "no-cache")])
            }
            return .json(JobBody(job, config: config(service, job)), headers: [("ETag", etag), ("Cache-Control", "no-cache")])
        }
    }

    func listJobs(_ request: HTTPRequest) -> HTTPResponse {
        withService { service throws(Problem) in
            var status: JobStatus?
            if let text = request.queryValue("status") {
                guard let parsed = JobStatus(rawValue: text.lowercased()) else {
                    throw Problem.invalidParameter("status", "'status' must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
                }
                status = parsed
            }
            let limit = try Self.integerQuery(request, "limit", default: 50, range: 1...500)
            var offset = try Self.integerQuery(request, "offset", default: 0, range: 0...Int(Int32.max))
            if let cursor = request.queryValue("cursor") {
                guard let decoded = Self.decodeCursor(cursor) else {
                    throw Problem.invalidParameter("cursor", "'cursor' must be a next_cursor value from an earlier page")
                }
                offset = decoded
            }
            let page = try Self.mapped { () throws(JobError) in try service.listJobs(status: status, limit: limit, offset: offset) }
            let next = offset + page.jobs.count < page.total ? Self.encodeCursor(offset + page.jobs.count) : nil
            return .json(JobListBody(jobs: page.jobs.map { JobBody($0, config: config(service, $0)) },
                                     total: page.total, limit: limit, offset: offset, nextCursor: next),
                         headers: [("Cache-Control", "no-cache")])
        }
    }

    func cancelJob(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let job: JobSnapshot
            job = try Self.mapped { () throws(JobError) in try service.cancel(id) }
            return .json(JobBody(job, config: config(service, job)), headers: [("ETag", Self.etag(job))])
        }
    }

    func deleteJob(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            try Self.mapped { () throws(JobError) in try service.delete(id) }
            return HTTPResponse(status: 204)
        }
    }

    func preview(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let image: JobImage
            image = try Self.mapped { () throws(JobError) in try service.preview(id) }
            return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"), ("X-Step", String(image.step)),
                                                       ("Cache-Control", "no-store")],
                                body: .bytes(Array(image.data)))
        }
    }

    func image(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let index = try Self.integerQuery(request, "i", default: 0, range: 0...Int(Int32.max))
            let image: JobImage
            image = try Self.mapped { () throws(JobError) in try service.image(id, index: index) }
            if let clip = try ClipRoutes.clipResponse(service, id: id, image: image, request: request) { return clip }
            return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"),
                                                       ("Cache-Control", "public, max-age=31536000, immutable")],
                                body: .bytes(Array(image.data)))
        }
    }

    /// A clip's contact sheet (ClipRoutes.frames).
    func frames(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in try ClipRoutes.frames(service, request, parameters) }
    }

    func stream(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let index = try Self.integerQuery(request, "i", default: 0, range: 0...Int(Int32.max))
            let subscription: JobSubscription
            subscription = try Self.mapped { () throws(JobError) in try service.subscribe(id) }
            let body = PreviewStreamBody(subscription: subscription) { [weak service] in
                ClipRoutes.streamFinal(service, id: id, index: index)
            }
            return HTTPResponse(status: 200, headers: [
                ("Content-Type", "multipart/x-mixed-replace; boundary=\(PreviewStreamBody.boundary)"),
                ("Cache-Control", "no-store"),
            ], body: .stream(body))
        }
    }

    func events(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let subscription: JobSubscription
            subscription = try Self.mapped { () throws(JobError) in try service.subscribe(id) }
            let snapshotConfig = (try? service.job(id)).flatMap { config(service, $0) }
            let body = ServerSentEventsBody(subscription: subscription, config: snapshotConfig,
                                            keepAlive: .milliseconds(Int64(configuration.keepAliveSeconds * 1000)))
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream"),
                                                       ("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")],
                                body: .stream(body))
        }
    }

    // MARK: Helpers

    static func etag(_ job: JobSnapshot) -> String { "\"\(job.id.rawValue)-\(job.revision)\"" }

    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            var value = candidate.trimmingCharacters(in: .whitespaces)
            if value == "*" { return true }
            if value.hasPrefix("W/") { value.removeFirst(2) }
            return value == etag
        }
    }

    static func integerQuery(_ request: HTTPRequest, _ name: String, default value: Int, range: ClosedRange<Int>)
        throws(Problem) -> Int {
        guard let text = request.queryValue(name) else { return value }
        guard let parsed = Int(text), range.contains(parsed) else {
            throw Problem.invalidParameter(name, "'\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound); got '\(text)'")
        }
        return parsed
    }

    /// Cursors are opaque to clients; they hold the offset of the next page.
    static func encodeCursor(_ offset: Int) -> String { "o" + String(offset, radix: 36) }
    static func decodeCursor(_ cursor: String) -> Int? {
        guard cursor.hasPrefix("o"), let value = Int(cursor.dropFirst(), radix: 36), value >= 0 else { return nil }
        return value
    }
}
