import ArgumentParser
import Foundation
import Logging
import TanhuiService

/// `tanhui`: one binary for the server and every operator and admin command.
@main
struct Tanhui: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tanhui",
        abstract: "Carbon-inclusion credits: sync API server, rule sets, ledger and audit.",
        subcommands: [
            Serve.self, Migrate.self, Rules.self, Operators.self, Partners.self, Offers.self, Ledger.self, Token.self, Audit.self, ReportCommand.self,
        ]
    )

    /// Usage errors exit 2 like every other "could not run" (ArgumentParser's default is 64),
    /// so scripts need to know only 0, 1 and 2.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success || code.rawValue == 1 || code.rawValue == 2 {
                exit(withError: error)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }
}

/// Exit codes shared by the commands: 0 success, 1 the command's check failed, 2 could not run.
enum ExitStatus {
    static let checkFailed = ExitCode(1)
    static let couldNotRun = ExitCode(2)
}

/// Builds configuration and services the same way for every command that touches the database.
enum CommandEnvironment {
    static func services(label: String) throws -> TanhuiServices {
        let config: TanhuiConfig
        do {
            config = try TanhuiConfig.fromEnvironment()
        } catch {
            printError(error.description)
            throw ExitStatus.couldNotRun
        }
        bootstrapLogging(level: config.logLevel)
        return TanhuiServices(config: config, logger: Logger(label: label))
    }

    /// Runs a command's work, then closes the pool. Expected failures print one line and
    /// exit 1 (the command's check failed) or 2 (it could not run); nothing leaks a stack.
    static func run(_ services: TanhuiServices, _ body: () async throws -> Void) async throws {
        do {
            try await body()
            await services.shutdown()
        } catch {
            await services.shutdown()
            switch error {
            case let exit as ExitCode: throw exit
            case let error as ValidationError: throw error
            case RuleSetLookupError.notFound(let province, let version):
                printError("\(province) version \(version) is not published")
                throw ExitStatus.checkFailed
            case RuleSetLookupError.forbidden(let province):
                printError("not allowed to act for \(province)")
                throw ExitStatus.checkFailed
            case let error as any ServiceRefusal:
                printError(error.description)
                throw ExitStatus.checkFailed
            default:
                printError("\(error)")
                throw ExitStatus.couldNotRun
            }
        }
    }

    static func bootstrapLogging(level: String) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: level) ?? .info
            return handler
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data(("tanhui: " + message + "\n").utf8))
}

/// Prints to stdout and flushes, so pipes (tests, supervisors) see lines as they happen.
func printLine(_ message: String) {
    FileHandle.standardOutput.write(Data((message + "\n").utf8))
}
