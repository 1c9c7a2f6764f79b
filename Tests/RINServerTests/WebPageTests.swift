import Foundation
import RINTestSupport
import XCTest

/// The page at `/` and its files, served by a real server on loopback (the browser test of the
/// page itself is Tests/web/run.sh).
final class WebPageTests: XCTestCase {
    var server: TestServer!
    var port: Int { server.port }

    override func setUpWithError() throws { server = try TestServer() }
    override func tearDown() { server?.shutdown() }

    func testThePageAndItsFilesAreServed() throws {
        let page = try http("GET", port, "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertEqual(page.header("content-type"), "text/html; charset=utf-8")
        XCTAssertTrue(page.text.contains("<title>rind</title>"), page.text)
        let policy = try XCTUnwrap(page.header("content-security-policy"))
        XCTAssertTrue(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), policy)
        XCTAssertEqual(page.header("x-content-type-options"), "nosniff")

        let script = try http("GET", port, "/web/app.js")
        XCTAssertEqual(script.status, 200)
        XCTAssertEqual(script.header("content-type"), "text/javascript; charset=utf-8")
        XCTAssertEqual(script.body, Array(try Data(contentsOf: Self.webFolder.appendingPathComponent("app.js"))))
        XCTAssertEqual(try http("GET", port, "/web/style.css").header("content-type"), "text/css; charset=utf-8")
        XCTAssertEqual(try http("HEAD", port, "/").status, 200)

        assertProblem(try http("GET", port, "/web/nothing.js"), status: 404)
        assertProblem(try http("GET", port, "/web/../openapi.yaml"), status: 404)
        assertProblem(try http("GET", port, "/web/%2e%2e%2fPackage.swift"), status: 404)
        assertProblem(try http("POST", port, "/"), status: 405)
    }

    /// With an API key the page and its files stay open (the page asks for the key), the API does not.
    func testThePageIsOpenUnderTheAPIKey() throws {
        server.shutdown()
        server = try TestServer(apiKey: "page-key")
        for path in ["/", "/web/app.js", "/web/style.css"] {
            XCTAssertEqual(try http("GET", port, path).status, 200, path)
        }
        assertProblem(try http("GET", port, "/models"), status: 401)
        assertProblem(try http("GET", port, "/web/nothing.js"), status: 404)
    }

    /// No external URL anywhere, and every URL relative (no leading "/"), so that the page works
    /// behind a reverse proxy's path prefix (Deploy/README.md).
    func testThePageUsesOnlyRelativeURLs() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.webFolder.path).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(Set(files), ["index.html", "app.js", "style.css"])
        for name in files {
            let text = try String(contentsOf: Self.webFolder.appendingPathComponent(name), encoding: .utf8)
            for pattern in [#"https?://"#, #"(src|href|action)="/"#, #"(src|href|action)="//"#, #"url\(\s*['"]?/"#,
                            #"(fetch|api|getJSON|showImage)\(\s*[`'"]/"#, #"@import"#] {
                XCTAssertNil(text.range(of: pattern, options: .regularExpression), "\(name) matches \(pattern)")
            }
        }
    }

    static var webFolder: URL { TestProject.root.appendingPathComponent("Sources/RINServer/Web") }
}
