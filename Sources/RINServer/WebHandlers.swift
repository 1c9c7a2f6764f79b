// Files the daemon serves from beside it: the page at `/` with its scripts and styles under
// `/web/` (WebAssets), and the OpenAPI document (openapi.yaml: /, /web/{file}, /openapi.yaml).
// All are open routes: the page itself asks for the API key where one is needed.
import Foundation

extension APIServer {
    /// `GET /`: the page.
    func webPage() -> HTTPResponse { webFile("index.html") }

    /// `GET /web/{file}`: one of the page's files.
    func webFile(_ name: String) -> HTTPResponse {
        guard let webAssets else {
            return Problem.notFound("the web page was not installed with this binary (share/rind/web)").response
        }
        guard let file = webAssets.files[name] else {
            return Problem.notFound("the web page has no file '\(name)'").response
        }
        return HTTPResponse(status: 200, headers: [
            ("Content-Type", file.contentType), ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", WebAssets.contentSecurityPolicy), ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ], body: .bytes(file.bytes))
    }

    func openAPIDocumentResponse() -> HTTPResponse {
        guard let openAPIDocument else { return Problem.notFound("openapi.yaml was not installed with this binary").response }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/yaml")], body: .bytes(openAPIDocument))
    }

    /// This process's executable, symlinks resolved (argv[0] may be a bare name found on PATH).
    public static func executableURL() -> URL {
        let link = URL(fileURLWithPath: "/proc/self/exe")
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link.path) {
            return URL(fileURLWithPath: target)
        }
        return (Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments.first ?? "")).resolvingSymlinksInPath()
    }

    /// The OpenAPI document: an explicit path, else next to the executable (SwiftPM's resource
    /// bundle, or `../share/rind/` after install), else beside this source file in a checkout.
    static func loadOpenAPIDocument(explicitPath: String?) -> [UInt8]? {
        var candidates: [URL] = []
        if let explicitPath { candidates.append(URL(fileURLWithPath: explicitPath)) }
        let executable = executableURL()
        let directory = executable.deletingLastPathComponent()
        candidates.append(directory.appendingPathComponent("rind_RINServer.resources/openapi.yaml"))
        candidates.append(directory.deletingLastPathComponent().appendingPathComponent("share/rind/openapi.yaml"))
        if let main = Bundle.main.resourceURL {
            candidates.append(main.appendingPathComponent("rind_RINServer.resources/openapi.yaml"))
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openapi.yaml"))
        for candidate in candidates {
            if let data = FileManager.default.contents(atPath: candidate.path), !data.isEmpty { return Array(data) }
        }
        return nil
    }
}
