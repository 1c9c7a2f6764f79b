import ArgumentParser

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(being written)")
    func run() async throws { throw ExitCode(2) }
}
