// Parsing `POST /generate`: the query string and a JSON body carry the same parameters with the same
// names; the body wins where both give one. Type and syntax errors are found here, range errors by
// the job layer (which knows each model's limits); both name the parameter.
//
// Rules (stated in openapi.yaml): a parameter appears at most once in the query and at most once in
// the body (a repeated one is 400, never first- or last-wins); a query value is never empty
// (checked for every route by `APIServer`); a body value is never JSON null: leaving a parameter
// out is how a client asks for the default.
import Foundation
import RINDiffusion
import RINJobs
import RINModel

/// A JSON value as sent, keeping integers exact (a 64-bit seed does not survive a Double).
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case unsigned(UInt64)
    case signed(Int64)
    case number(Double)
    case string(String)
    case array
    case object

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(UInt64.self) { self = .unsigned(value); return }
        if let value = try? container.decode(Int64.self) { self = .signed(value); return }
        if let value = try? container.decode(Double.self) { self = .number(value); return }
        if let value = try? container.decode(String.self) { self = .string(value); return }
        if (try? container.decode([JSONValue].self)) != nil { self = .array; return }
        self = .object
    }

    /// The value as a query-string-like text; null, arrays and objects are refused.
    func text(parameter: String) throws(Problem) -> String {
        switch self {
        case .null:
            throw Problem.invalidParameter(parameter, "'\(parameter)' must not be null; leave it out for the model's default")
        case .bool(let value): return value ? "true" : "false"
        case .unsigned(let value): return String(value)
        case .signed(let value): return String(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 9.0e15 { return String(Int64(value)) }
            return String(value)
        case .string(let value): return value
        case .array, .object:
            throw Problem.invalidParameter(parameter, "'\(parameter)' must be a number or a string")
        }
    }
}

/// The parameters `POST /generate` accepts, as named in the API.
enum GenerateParameters {
    static let names: Set<String> = ["class", "model", "seed", "steps", "sampler", "schedule", "guidance", "n",
                                     "preview_every", "carry_latents"]

    /// Collects the raw parameters from the query and the body.
    static func collect(_ request: HTTPRequest) throws(Problem) -> [String: String] {
        var values: [String: String] = [:]
        for (name, value) in request.query {
            guard names.contains(name) else {
                throw Problem.invalidParameter(name, "unknown parameter '\(name)'; known: \(names.sorted().joined(separator: ", "))")
            }
            values[name] = value
        }
        let body = request.body
        if body.contains(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }) {
            let contentType = request.header("content-type") ?? ""
            let mediaType = contentType.split(separator: ";").first.map {
                $0.trimmingCharacters(in: .whitespaces).lowercased()
            } ?? ""
            guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json"))
            else { throw Problem.unsupportedMediaType(contentType) }
            let object: [String: JSONValue]
            do {
                object = try JSONDecoder().decode([String: JSONValue].self, from: Data(body))
            } catch let error as DecodingError {
                throw Problem.malformedJSON("the body is not a JSON object: \(Self.describe(error))")
            } catch {
                throw Problem.malformedJSON("the body is not a JSON object")
            }
            var seen: Set<String> = []
            for key in topLevelKeys(body) where !seen.insert(key).inserted {
                throw Problem.invalidParameter(key, "'\(key)' appears more than once in the JSON body")
            }
            for (name, value) in object.sorted(by: { $0.key < $1.key }) {
                guard names.contains(name) else {
                    throw Problem.invalidParameter(name, "unknown parameter '\(name)'; known: \(names.sorted().joined(separator: ", "))")
                }
                values[name] = try value.text(parameter: name)
            }
        }
        return values
    }

    /// The keys of a JSON object's top level, in order, repeats included (JSONDecoder keeps one of
    /// a repeated key silently). `body` must already have decoded as an object.
    static func topLevelKeys(_ body: [UInt8]) -> [String] {
        var keys: [String] = []
        var depth = 0
        var expectingKey = false
        var index = 0
        while index < body.count {
            let byte = body[index]
            if byte == UInt8(ascii: "\"") {
                let start = index
                index += 1
                while index < body.count && body[index] != UInt8(ascii: "\"") {
                    index += body[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                if depth == 1 && expectingKey, index < body.count,
                   let key = (try? JSONSerialization.jsonObject(with: Data(body[start...index]), options: .fragmentsAllowed)) as? String {
                    keys.append(key)
                    expectingKey = false
                }
            } else if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                depth += 1
                if depth == 1 { expectingKey = true }
            } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                depth -= 1
            } else if byte == UInt8(ascii: ",") && depth == 1 {
                expectingKey = true
            }
            index += 1
        }
        return keys
    }

    /// Turns raw values into a job request for `checkpoint` (class names resolved with its config).
    static func jobRequest(_ values: [String: String], model: String?, checkpoint: RINCheckpoint)
        throws(Problem) -> JobRequest {
        var request = JobRequest(model: model)
        if let text = values["class"] {
            request.classIndex = try classIndex(text, checkpoint: checkpoint)
        }
        if let text = values["seed"] {
            guard let seed = UInt64(text) else {
                throw Problem.invalidParameter("seed", "'seed' must be a non-negative integer; got '\(text)'")
            }
            request.seed = seed
        }
        request.steps = try integer(values, "steps", range: "1...1000")
        do {
            if let text = values["sampler"] { request.sampler = try SamplingRequest.sampler(text) }
            if let text = values["schedule"] { request.schedule = try SamplingRequest.schedule(text) }
        } catch {
            throw problem(error)
        }
        if let text = values["guidance"] {
            // Only the syntax here: whether the model can guide is SamplingRequest.resolved's call.
            guard let guidance = Float(text), guidance.isFinite, guidance >= 0 else {
                throw Problem.invalidParameter("guidance", "'guidance' must be a number >= 0; got '\(text)'")
            }
            request.guidance = guidance
        }
        request.count = try integer(values, "n", range: "1...16")
        if let every = try integer(values, "preview_every", range: "0 (none) or more") {
            guard every >= 0 else {
                throw Problem.invalidParameter("preview_every", "'preview_every' must be 0 (no previews) or more; got \(every)")
            }
            request.previewEvery = every
        }
        if let text = values["carry_latents"] {
            switch text.lowercased() {
            case "true", "1", "yes": request.carryLatents = true
            case "false", "0", "no": request.carryLatents = false
            default: throw Problem.invalidParameter("carry_latents", "'carry_latents' must be true or false; got '\(text)'")
            }
        }
        return request
    }

    /// A class row from an id, a name or a synonym (`SamplingRequest.classRow`, the model's `ClassCatalog`).
    static func classIndex(_ text: String, checkpoint: RINCheckpoint) throws(Problem) -> Int {
        do {
            return try SamplingRequest.classRow(text, in: checkpoint)
        } catch {
            throw problem(error)
        }
    }

    /// A parameter the engine's parsing refused, named as the API names it.
    private static func problem(_ error: SamplingError) -> Problem {
        switch error {
        case let .invalidParameter(name, message):
            let apiName = apiName(name)
            return Problem.invalidParameter(apiName, name == "class" ? message : "'\(apiName)' \(message)")
        }
    }

    private static func integer(_ values: [String: String], _ name: String, range: String) throws(Problem) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text) else {
            throw Problem.invalidParameter(name, "'\(name)' must be an integer (\(range)); got '\(text)'")
        }
        return value
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context): return context.underlyingError.map { "\($0.localizedDescription)" } ?? context.debugDescription
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context):
            return context.debugDescription
        @unknown default: return "\(error)"
        }
    }

    /// Maps the engine's and job layer's parameter names to the API's.
    static func apiName(_ name: String) -> String {
        switch name {
        case "classIndex", "class_index": return "class"
        case "count": return "n"
        case "previewEvery": return "preview_every"
        case "carryLatents": return "carry_latents"
        default: return name
        }
    }
}
