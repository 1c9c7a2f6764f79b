import ArgumentParser

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(being written)")
    func run() async throws { throw ExitCode(2) }
}
