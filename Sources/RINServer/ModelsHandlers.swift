// The loaded models (openapi.yaml: /models).
import Foundation
import RINJobs

extension APIServer {
    func models() -> HTTPResponse {
        withService { service throws(Problem) in
            let models = service.models.enumerated().map { index, checkpoint in
                ModelBody(checkpoint, isDefault: index == 0, previewEvery: service.configuration.previewEvery)
            }
            return .json(ModelListBody(defaultModel: service.defaultModel.name, models: models))
        }
    }
}
