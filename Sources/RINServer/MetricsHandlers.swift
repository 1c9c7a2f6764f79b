// Prometheus metrics (openapi.yaml: /metrics): an open route, scraped without the API key.
import Foundation

extension APIServer {
    func metricsPage() -> HTTPResponse {
        .text(metrics.render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
    }
}
