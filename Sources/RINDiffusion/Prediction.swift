import Foundation
import RINModel

// Turning the network's raw output into (x0, eps), shared by both samplers
// (checkpoints/README.md, "Sampling", steps 1 and 2). Arithmetic is float32 on the arrays with the
// coefficients computed in double and rounded once, as the PyTorch reference does (a Python float
// times a float32 tensor).
//
// Shape legend: v = values of all images in the batch (count * F * H * W * C).

/// Classifier-free guidance on raw outputs (Ho and Salimans 2022, eq. 6, in RIN's official form):
/// out (v) = (1 + w) cond (v) - w uncond (v).
func combineGuidance(_ out: UnsafeMutablePointer<Float>, cond: UnsafePointer<Float>, uncond: UnsafePointer<Float>,
                     weight: Float, _ v: Int) {
    let a = 1 + weight
    for i in 0..<v { out[i] = a * cond[i] - weight * uncond[i] }
}

/// x0 (v) = clip(x0 from the prediction, -1, 1); eps (v) = (x - sqrt(g) x0) / sqrt(1 - g).
///   eps-pred: x0 = (x - sqrt(1-g) eps) / sqrt(g);  x0-pred: x0 = out;  v-pred: x0 = sqrt(g) x - sqrt(1-g) v.
func predictionToX0Eps(x0: UnsafeMutablePointer<Float>, eps: UnsafeMutablePointer<Float>,
                       out: UnsafePointer<Float>, x: UnsafePointer<Float>, gamma g: Double,
                       prediction: RINConfig.Prediction, _ v: Int) {
    let sg = Float(g.squareRoot()), s1g = Float((1 - g).squareRoot())
    for i in 0..<v {
        let raw: Float
        switch prediction {
        case .eps: raw = (x[i] - s1g * out[i]) / sg
        case .x0: raw = out[i]
        case .v: raw = sg * x[i] - s1g * out[i]
        }
        x0[i] = min(max(raw, -1), 1)
        eps[i] = (x[i] - sg * x0[i]) / s1g
    }
}
