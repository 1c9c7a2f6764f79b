import ArgumentParser

/// The `rind` executable only wires the layers together: each subcommand lives in its own file.
@main
struct Rind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rind",
        abstract: "Serve and sample Recurrent Interface Network (RIN) diffusion models on the CPU.",
        subcommands: [Serve.self, Sample.self, Bench.self],
        defaultSubcommand: Serve.self)
}
