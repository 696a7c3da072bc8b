import ArgumentParser

@main
struct TanhuiLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tanhui-load", abstract: "Load generator for Scripts/bench.sh (placeholder).")
    func run() async throws {}
}
