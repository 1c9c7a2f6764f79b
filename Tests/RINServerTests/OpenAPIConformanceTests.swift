import Foundation
import RINTestSupport
import XCTest

/// openapi.yaml is valid OpenAPI 3.1, names every route, lists the statuses real responses had,
/// and real responses match its schemas (checked with openapi-spec-validator and jsonschema from
/// scripts/test-python-env.sh's venv).
final class OpenAPIConformanceTests: XCTestCase {
    func testRealResponsesMatchTheSpec() throws {
        let python = try testPython()
        let server = try TestServer(video: true)
        defer { server.shutdown() }
        let port = server.port

        var bodies: [[String: Any]] = []
        func add(_ schema: String, _ result: HTTPResult) {
            bodies.append(["schema": schema, "body": (try? JSONSerialization.jsonObject(with: Data(result.body))) ?? NSNull()])
        }
        let submitted = try http("POST", port, "/generate?class=red&steps=4&n=2&preview_every=1")
        add("Job", submitted)
        let id = submitted.json["id"] as! String
        try server.waitFor(id, ["succeeded"])
        add("Job", try http("GET", port, "/jobs/\(id)"))
        // A video model's job: its links name the contact sheets; frames.png of an image job is a problem.
        let clip = try http("POST", port, "/generate?model=tiny-video&class=green&steps=2&n=2")
        add("Job", clip)
        let clipID = clip.json["id"] as! String
        try server.waitFor(clipID, ["succeeded"])
        add("Job", try http("GET", port, "/jobs/\(clipID)"))
        add("Problem", try http("GET", port, "/jobs/\(id)/frames.png"))
        add("Problem", try http("GET", port, "/jobs/\(clipID)/image.png?fps=0"))
        add("JobList", try http("GET", port, "/jobs"))
        add("ModelList", try http("GET", port, "/models"))
        add("Health", try http("GET", port, "/healthz"))
        add("Health", try http("GET", port, "/readyz"))
        let blocker = try server.startBlocker()
        add("Job", try http("GET", port, "/jobs/\(blocker)"))
        add("Job", try http("POST", port, "/jobs/\(blocker)/cancel"))
        let queued = try http("POST", port, "/generate?class=1&steps=2")
        add("Job", queued)
        add("JobList", try http("GET", port, "/jobs?limit=1"))
        for problem in [try http("POST", port, "/generate?class=9"), try http("GET", port, "/jobs/0123456789abcdef"),
                        try http("PUT", port, "/jobs"), try http("GET", port, "/jobs/\(blocker)/image.png"),
                        try http("POST", port, "/generate", headers: ["Content-Type": "text/plain"], body: [65])] {
            XCTAssertEqual(problem.header("content-type"), "application/problem+json")
            add("Problem", problem)
        }
        // An SSE preview event's data.
        let stream = try openStream(port, "/jobs/\(id)/events")
        var comments = 0
        while let event = readEvent(stream.reader, comments: &comments) {
            let object = try JSONSerialization.jsonObject(with: Data(event.data.utf8))
            bodies.append(["schema": event.name == "preview" ? "PreviewEvent" : "EventData", "body": object])
        }
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()

        let operations = [
            ["post", "/generate"], ["get", "/jobs"], ["get", "/jobs/{id}"], ["delete", "/jobs/{id}"],
            ["post", "/jobs/{id}/cancel"], ["get", "/jobs/{id}/preview.png"], ["get", "/jobs/{id}/image.png"],
            ["get", "/jobs/{id}/frames.png"],
            ["get", "/jobs/{id}/stream"], ["get", "/jobs/{id}/events"], ["get", "/models"], ["get", "/healthz"],
            ["get", "/readyz"], ["get", "/metrics"], ["get", "/openapi.yaml"], ["get", "/"], ["get", "/web/{file}"],
        ]
        // The HTTP layer's checks of the request head come before routing, so each operation must
        // list their statuses: 400 for a repeated single-valued header field, 414 for a request
        // target over 8 KiB, 431 for a head over 32 KiB, each sent to every operation.
        var statuses: [[String]] = []
        let longQuery = "?pad=" + String(repeating: "x", count: 9000)
        let padding = String(repeating: "a", count: 40 * 1024)
        for operation in operations {
            let (method, template) = (operation[0], operation[1])
            let path = template.replacingOccurrences(of: "{id}", with: id).replacingOccurrences(of: "{file}", with: "app.js")
            let repeated = try http(port, requestLine: "\(method.uppercased()) \(path) HTTP/1.1",
                                    fields: ["Host: x", "Idempotency-Key: a", "Idempotency-Key: a"])
            assertProblem(repeated, status: 400, parameter: "Idempotency-Key")
            let long = try http(method.uppercased(), port, path + longQuery)
            assertProblem(long, status: 414)
            let large = try http(method.uppercased(), port, path, headers: ["X-Padding": padding])
            assertProblem(large, status: 431)
            for result in [repeated, long, large] {
                add("Problem", result)
                statuses.append([method, template, String(result.status)])
            }
        }
        let samples = Fixtures.temporaryDirectory("rind-openapi").appendingPathComponent("samples.json")
        try JSONSerialization.data(withJSONObject: ["operations": operations, "bodies": bodies, "statuses": statuses])
            .write(to: samples)
        let (status, output) = try runProcess(python, [
            TestProject.root.appendingPathComponent("scripts/validate-responses.py").path,
            TestProject.root.appendingPathComponent("openapi.yaml").path, samples.path,
        ])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("0 failure(s)"), output)
        print(output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testRootOpenAPIIsTheServedResource() throws {
        let root = TestProject.root.appendingPathComponent("openapi.yaml")
        let resource = TestProject.root.appendingPathComponent("Sources/RINServer/openapi.yaml")
        XCTAssertEqual(try Data(contentsOf: root), try Data(contentsOf: resource))
    }
}
