/// Matches request paths against route templates ("/jobs/{id}/image.png") and dispatches by method.
///
/// An unknown path answers 404, a known path with another method 405 with `Allow`; `HEAD` is served
/// by every `GET` handler (libmicrohttpd drops the body).
public struct Router: Sendable {
    /// Path parameters captured from `{name}` segments.
    public typealias Parameters = [String: String]
    public typealias Handler = @Sendable (HTTPRequest, Parameters) -> HTTPResponse

    /// One route: a template and a handler per method.
    public struct Route: Sendable {
        public let template: String
        let segments: [Segment]
        var handlers: [String: Handler]
        /// Open routes need no API key (health, readiness, metrics).
        public let open: Bool

        enum Segment: Sendable, Equatable {
            case literal(String)
            case parameter(String)
        }

        /// Methods this route answers, `HEAD` included wherever `GET` is.
        public var allowedMethods: [String] {
            var methods = Array(handlers.keys)
            if handlers["GET"] != nil { methods.append("HEAD") }
            return methods.sorted()
        }

        func match(_ pathSegments: [Substring]) -> Parameters? {
            guard pathSegments.count == segments.count else { return nil }
            var parameters: Parameters = [:]
            for (segment, part) in zip(segments, pathSegments) {
                switch segment {
                case .literal(let literal):
                    if literal != part { return nil }
                case .parameter(let name):
                    if part.isEmpty { return nil }
                    parameters[name] = String(part)
                }
            }
            return parameters
        }
    }

    /// The result of routing one request.
    public enum Match {
        case handler(Route, Handler, Parameters)
        case methodNotAllowed(Route)
        case notFound
    }

    public private(set) var routes: [Route] = []

    public init() {}

    /// Adds `handler` for `method` on `template`; repeated templates collect methods.
    public mutating func add(_ method: String, _ template: String, open: Bool = false, _ handler: @escaping Handler) {
        if let index = routes.firstIndex(where: { $0.template == template }) {
            routes[index].handlers[method] = handler
            return
        }
        let segments = template.split(separator: "/", omittingEmptySubsequences: true).map { part -> Route.Segment in
            if part.hasPrefix("{") && part.hasSuffix("}") { return .parameter(String(part.dropFirst().dropLast())) }
            return .literal(String(part))
        }
        routes.append(Route(template: template, segments: segments, handlers: [method: handler], open: open))
    }

    /// Finds the route and handler for a method and path.
    public func match(method: String, path: String) -> Match {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        // "/" has no segments (the template "/" neither); "/jobs/" is "/jobs".
        let normalized = parts.last == "" ? Array(parts.dropLast()) : Array(parts)
        for route in routes {
            guard let parameters = route.match(normalized) else { continue }
            let lookup = method == "HEAD" ? "GET" : method
            if let handler = route.handlers[lookup] { return .handler(route, handler, parameters) }
            return .methodNotAllowed(route)
        }
        return .notFound
    }
}
