import Foundation

/// An RFC 9457 problem detail: the body of every error response (`application/problem+json`).
///
/// Only the server builds these: lower layers throw their own typed errors, and
/// `APIServer.problem(for:)` (JobErrorProblems.swift) turns them into problems at the edge.
public struct Problem: Error, Codable, Sendable, Equatable {
    /// A URI reference naming the kind of problem; stable, documented in openapi.yaml.
    public var type: String
    /// Short, fixed summary of the kind.
    public var title: String
    /// The HTTP status code.
    public var status: Int
    /// What went wrong with this request, in words.
    public var detail: String
    /// The request parameter at fault, where there is one.
    public var parameter: String?
    /// Extra response headers (Retry-After, Allow, WWW-Authenticate); not part of the body.
    public var headers: [String: String] = [:]

    enum CodingKeys: String, CodingKey { case type, title, status, detail, parameter }

    public init(kind: String, title: String, status: Int, detail: String, parameter: String? = nil,
                headers: [String: String] = [:]) {
        self.type = Problem.typeBase + kind
        self.title = title
        self.status = status
        self.detail = detail
        self.parameter = parameter
        self.headers = headers
    }

    /// Problem type URIs share this prefix; the suffix is the kind ("invalid-parameter").
    public static let typeBase = "urn:rind:problem:"

    /// The response that carries this problem.
    public var response: HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(self)) ?? Data()
        var fields: [(name: String, value: String)] = [("Content-Type", "application/problem+json")]
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { fields.append((name, value)) }
        return HTTPResponse(status: status, headers: fields, body: .bytes(Array(body) + [0x0A]))
    }

    // MARK: The kinds the API uses (each documented in openapi.yaml's Problem schema)

    public static func invalidParameter(_ name: String, _ detail: String) -> Problem {
        Problem(kind: "invalid-parameter", title: "Invalid parameter", status: 400, detail: detail, parameter: name)
    }
    public static func malformedJSON(_ detail: String) -> Problem {
        Problem(kind: "malformed-json", title: "Malformed JSON body", status: 400, detail: detail)
    }
    /// A request the HTTP layer refuses before routing (an encoded NUL, a repeated header field).
    public static func badRequest(_ detail: String, parameter: String? = nil) -> Problem {
        Problem(kind: "bad-request", title: "Bad request", status: 400, detail: detail, parameter: parameter)
    }
    public static func unauthorized() -> Problem {
        Problem(kind: "unauthorized", title: "Unauthorized", status: 401,
                detail: "this route needs 'Authorization: Bearer <api key>'",
                headers: ["WWW-Authenticate": "Bearer realm=\"rind\""])
    }
    public static func notFound(_ detail: String) -> Problem {
        Problem(kind: "not-found", title: "Not found", status: 404, detail: detail)
    }
    public static func methodNotAllowed(method: String, path: String, allowed: [String]) -> Problem {
        Problem(kind: "method-not-allowed", title: "Method not allowed", status: 405,
                detail: "\(method) is not allowed on \(path); allowed: \(allowed.joined(separator: ", "))",
                headers: ["Allow": allowed.joined(separator: ", ")])
    }
    public static func conflict(_ detail: String, parameter: String? = nil, retryAfter: Int? = nil) -> Problem {
        Problem(kind: "job-not-finished", title: "Job not finished", status: 409, detail: detail,
                parameter: parameter, headers: retryAfter.map { ["Retry-After": String($0)] } ?? [:])
    }
    public static func gone(_ detail: String) -> Problem {
        Problem(kind: "gone", title: "Gone", status: 410, detail: detail)
    }
    public static func payloadTooLarge(limit: Int) -> Problem {
        Problem(kind: "payload-too-large", title: "Payload too large", status: 413,
                detail: "the request body exceeds the limit of \(limit) bytes")
    }
    public static func unsupportedMediaType(_ contentType: String) -> Problem {
        Problem(kind: "unsupported-media-type", title: "Unsupported media type", status: 415,
                detail: "the body must be application/json (or empty, with parameters in the query); got '\(contentType)'",
                headers: ["Accept-Post": "application/json"])
    }
    public static func queueFull(retryAfter: Int, detail: String) -> Problem {
        Problem(kind: "queue-full", title: "Queue full", status: 429, detail: detail,
                headers: ["Retry-After": String(retryAfter)])
    }
    public static func unavailable(detail: String, retryAfter: Int) -> Problem {
        Problem(kind: "unavailable", title: "Service unavailable", status: 503, detail: detail,
                headers: ["Retry-After": String(retryAfter)])
    }
    public static func internalError(_ detail: String) -> Problem {
        Problem(kind: "internal", title: "Internal server error", status: 500, detail: detail)
    }
}
