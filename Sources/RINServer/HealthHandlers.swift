// Liveness and readiness (openapi.yaml: /healthz, /readyz): open routes that need no API key, for
// systemd, load balancers and orchestrators.
import Foundation
import RINJobs

extension APIServer {
    func health() -> HTTPResponse { .json(HealthBody(status: "ok")) }

    func readiness() -> HTTPResponse {
        switch (currentPhase(), readyService()) {
        case (.ready, .success(let service)):
            guard service.storageWritable() else {
                if service.usesSharedStore {
                    return Problem.unavailable(detail: "the job database cannot be reached; the daemon reconnects by itself and jobs wait until it can",
                                               retryAfter: 5).response
                }
                return Problem.unavailable(detail: "the state directory cannot be written (full or read-only); jobs wait until it can",
                                           retryAfter: 30).response
            }
            return .json(HealthBody(status: "ready"))
        case (.draining, _):
            return Problem.unavailable(detail: "the daemon is shutting down", retryAfter: configuration.unavailableRetryAfter).response
        default:
            return Problem.unavailable(detail: "the models are still loading", retryAfter: configuration.unavailableRetryAfter).response
        }
    }
}
