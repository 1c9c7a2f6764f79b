import ArgumentParser
import Foundation
import RINTensor

/// The `rind` executable only wires the layers together: each subcommand lives in its own file.
@main
struct Rind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rind",
        abstract: "Serve and sample Recurrent Interface Network (RIN) diffusion models on the CPU.",
        subcommands: [Serve.self, Sample.self, Bench.self],
        defaultSubcommand: Serve.self)

    /// ArgumentParser exits 64 (EX_USAGE) on unknown options and malformed values; rind promises
    /// exit status 2 with a one-line error for every bad argument, so usage errors are mapped here.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if let problem = MatmulBackend.environmentProblem {
                FileHandle.standardError.write(Data("rind: \(problem)\n".utf8))
                Foundation.exit(2)
            }
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                let message = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                FileHandle.standardError.write(Data("rind: \(message)\n".utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
