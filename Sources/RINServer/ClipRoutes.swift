// Results of video models (openapi.yaml, "Clips"). A video model's job stores each clip as an
// animated PNG (PNGImageEncoder); these handlers serve it:
//   GET /jobs/{id}/image.png[?i=k][&fps=N]  the clip as image/apng, its frame delays set to 1/N s
//                                            (N: the request's `fps`, else the model's sampling.fps)
//   GET /jobs/{id}/frames.png[?i=k]         the clip's contact sheet: its frames in a row, a still PNG
//   GET /jobs/{id}/stream                   ends with the contact sheet, like its preview parts
// Image models answer image.png as before and refuse `fps` and frames.png.
import Foundation
import RINImage
import RINJobs
import RINModel

enum ClipRoutes {
    static let contentType = "image/apng"

    /// The model of a job, nil if it is no longer loaded.
    static func modelConfig(_ service: JobService, _ id: JobID) -> RINConfig? {
        (try? service.job(id)).flatMap { service.checkpoint(named: $0.model)?.config }
    }

    /// `fps` of a request: nil when absent; an integer in `RINConfig.Sampling.fpsRange`.
    static func requestedFPS(_ request: HTTPRequest) throws(Problem) -> Int? {
        guard let text = request.queryValue("fps") else { return nil }
        let range = RINConfig.Sampling.fpsRange
        guard let value = Int(text), range.contains(value) else {
            throw Problem.invalidParameter("fps", "'fps' must be an integer in \(range.lowerBound)...\(range.upperBound) (frames per second); got '\(text)'")
        }
        return value
    }

    /// The response for a finished job's stored `image` when the job's model makes clips: the APNG
    /// at the requested or the model's frame rate. nil for image models (answered as before),
    /// which refuse `fps`.
    static func clipResponse(_ service: JobService, id: JobID, image: JobImage, request: HTTPRequest)
        throws(Problem) -> HTTPResponse? {
        let fps = try requestedFPS(request)
        guard let config = modelConfig(service, id), config.isVideo else {
            if fps != nil {
                throw Problem.invalidParameter("fps", "'fps' applies to clips; this job's model makes images")
            }
            return nil
        }
        let data: Data
        do {
            data = try APNG.retimed(image.data, fps: fps ?? config.framesPerSecond)
        } catch {
            throw Problem.internalError("the stored clip could not be read: \(error)")
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", contentType),
                                                   ("Cache-Control", "public, max-age=31536000, immutable")],
                            body: .bytes(Array(data)))
    }

    /// The contact sheet (frames in a row) of a stored clip, as PNG bytes.
    static func contactSheet(_ clip: Data) throws(ImageError) -> Data {
        try PNG.encode(try ImageGrid.contactSheet(try APNG.frames(of: clip).frames))
    }

    /// `GET /jobs/{id}/frames.png`.
    static func frames(_ service: JobService, _ request: HTTPRequest, _ parameters: Router.Parameters)
        throws(Problem) -> HTTPResponse {
        let text = parameters["id"] ?? ""
        guard let id = JobID(text) else {
            throw Problem.notFound("no job '\(text)' (job ids are 16 hexadecimal characters)")
        }
        let index = try APIServer.integerQuery(request, "i", default: 0, range: 0...Int(Int32.max))
        let image = try APIServer.mapped { () throws(JobError) in try service.image(id, index: index) }
        guard modelConfig(service, id)?.isVideo == true else {
            throw Problem(kind: "not-a-clip", title: "Not a clip", status: 404,
                          detail: "job \(id.rawValue)'s model makes images, not clips: its result is /jobs/\(id.rawValue)/image.png")
        }
        let sheet: Data
        do {
            sheet = try contactSheet(image.data)
        } catch {
            throw Problem.internalError("the stored clip could not be read: \(error)")
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"),
                                                   ("Cache-Control", "public, max-age=31536000, immutable")],
                            body: .bytes(Array(sheet)))
    }

    /// The last part of `/stream`: the stored result, as a contact sheet for clips (the previews
    /// before it are contact sheets too, so the picture keeps its size).
    static func streamFinal(_ service: JobService?, id: JobID, index: Int) -> Data? {
        guard let service, let data = try? service.image(id, index: index).data else { return nil }
        guard modelConfig(service, id)?.isVideo == true else { return data }
        return try? contactSheet(data)
    }
}
