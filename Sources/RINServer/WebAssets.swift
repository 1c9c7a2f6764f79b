// The page at `/` (Sources/RINServer/Web): plain HTML, CSS and JavaScript, no build step. The
// files are read once when the server starts, from the first of these that holds index.html:
// an explicit directory, SwiftPM's resource bundle beside the executable, `../share/rind/web/`
// after `make dist` or Deploy/install.sh, or this source folder in a checkout.
import Foundation

/// The page's files by name ("index.html", "app.js", ...), each with its media type.
struct WebAssets: Sendable {
    struct File: Sendable {
        let bytes: [UInt8]
        let contentType: String
    }

    /// The folder the files came from (logged at start).
    let directory: URL
    let files: [String: File]

    /// The media types served; files with other extensions are not served.
    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "png": "image/png",
        "svg": "image/svg+xml",
        "ico": "image/x-icon",
    ]

    /// What the page may load: its own files, its own API, and the blob: URLs it makes of images.
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        + "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// The files of the first candidate folder that has an index.html; nil when none has.
    static func load(explicitDirectory: String?) -> WebAssets? {
        var candidates: [URL] = []
        if let explicitDirectory { candidates.append(URL(fileURLWithPath: explicitDirectory)) }
        let directory = APIServer.executableURL().deletingLastPathComponent()
        candidates.append(directory.appendingPathComponent("rind_RINServer.resources/Web"))
        candidates.append(directory.deletingLastPathComponent().appendingPathComponent("share/rind/web"))
        if let main = Bundle.main.resourceURL {
            candidates.append(main.appendingPathComponent("rind_RINServer.resources/Web"))
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Web"))
        for candidate in candidates {
            if let assets = read(candidate) { return assets }
        }
        return nil
    }

    /// The regular files directly in `directory` with a known extension.
    static func read(_ directory: URL) -> WebAssets? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path),
              names.contains("index.html") else { return nil }
        var files: [String: File] = [:]
        for name in names where !name.hasPrefix(".") {
            let url = directory.appendingPathComponent(name)
            guard let type = contentTypes[url.pathExtension.lowercased()],
                  let values = try? url.resourceValues(forKeys: [.isRegularFileKey]), values.isRegularFile == true,
                  let data = FileManager.default.contents(atPath: url.path) else { continue }
            files[name] = File(bytes: Array(data), contentType: type)
        }
        return files["index.html"] == nil ? nil : WebAssets(directory: directory, files: files)
    }
}
