import CKernels

/// A linear layer's weight packed once at load for the `packed` matrix backend: column panels of
/// `panelWidth` outputs, each k-major (Sources/CKernels/include/rind_pgemm.h has the layout).
/// The caller owns the buffer (`floatCount` floats); this only describes it.
public struct PackedLinearWeight: @unchecked Sendable {
    public static let panelWidth = Int(RIND_PGEMM_PANEL)
    public let values: UnsafePointer<Float>
    public let inputs: Int
    public let outputs: Int

    /// Floats the packed form of an (outputs, inputs) weight takes.
    public static func floatCount(inputs: Int, outputs: Int) -> Int {
        rind_pgemm_packed_floats(inputs, outputs)
    }

    /// Packs `weight` (outputs, inputs), row-major as PyTorch stores it, into `buffer`
    /// (`floatCount` floats).
    public init(packing weight: UnsafePointer<Float>, inputs: Int, outputs: Int, into buffer: UnsafeMutablePointer<Float>) {
        rind_pgemm_pack(buffer, weight, inputs, outputs)
        values = UnsafePointer(buffer)
        self.inputs = inputs
        self.outputs = outputs
    }

    /// What a product does with inp W^T + bias.
    public enum Mode: Int32 { case store = 0, accumulate = 1, gelu = 2 }

    /// out (N, outputs; row stride ldOut) = / += / = GELU of inp (N, inputs; row stride ldInp) W^T + bias.
    ///
    /// On the `packed` backend rind's micro-kernels run it on the matrix threads; on the others
    /// (a network packed under `packed`, then switched, as the tests do) each panel is one sgemm.
    public func apply(_ out: UnsafeMutablePointer<Float>, ldOut: Int, _ inp: UnsafePointer<Float>, ldInp: Int,
                      bias: UnsafePointer<Float>?, rows N: Int, mode: Mode) {
        if MatmulBackend.current == .packed {
            rind_pgemm(out, ldOut, inp, ldInp, values, bias, N, inputs, outputs, mode.rawValue, rind_gemm_threads())
            return
        }
        let w = Self.panelWidth
        var column = 0
        while column < outputs {
            let columns = min(w, outputs - column)
            gemm(transA: false, transB: false, N, columns, inputs, alpha: 1, inp, ldInp,
                 values + column * inputs, w, beta: mode == .accumulate ? 1 : 0, out + column, ldOut)
            column += w
        }
        switch mode {
        case .gelu:
            precondition(ldOut == outputs, "PackedLinearWeight: GELU rows must be contiguous")
            biasGELURows(out, bias!, N, outputs)
        case .store, .accumulate:
            if let bias { addBiasRows(out, ld: ldOut, bias, N, outputs) }
        }
    }
}
