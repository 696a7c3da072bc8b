import ArgumentParser
import Foundation
import TanhuiService

/// `tanhui token issue`: device tokens for development and tests.
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mint device tokens (development and tests).",
        subcommands: [Issue.self]
    )

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a signed device token for a citizen and device (TANHUI_TOKEN_SECRET).")
        @Option(help: "Citizen UUID.") var citizen: String
        @Option(help: "Device id (1–200 bytes).") var device: String
        @Option(help: "Lifetime: seconds, or with a unit: 30m, 12h, 7d (at most 366d).") var ttl = "24h"

        static func seconds(_ text: String) -> TimeInterval? {
            let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            if let last = text.last, let unit = units[last], let value = Double(text.dropLast()), value > 0 { return value * unit }
            if let value = Double(text), value > 0 { return value }
            return nil
        }

        func validate() throws {
            guard UUID(uuidString: citizen) != nil else { throw ValidationError("--citizen must be a UUID") }
            guard (1...200).contains(device.utf8.count) else { throw ValidationError("--device must be 1–200 bytes") }
            guard !DeviceClaims.isReserved(device: device) else { throw ValidationError("--device: ids starting with partner: are reserved") }
            guard let seconds = Self.seconds(ttl), seconds <= DeviceTokens.maximumTTL else {
                throw ValidationError("--ttl must be positive and at most 366d, e.g. 3600, 30m, 12h, 7d")
            }
        }

        func run() async throws {
            let config: TanhuiConfig
            do {
                config = try TanhuiConfig.fromEnvironment(requireDatabase: false)
            } catch {
                printError(error.description)
                throw ExitStatus.couldNotRun
            }
            guard let secret = config.tokenSecret else {
                printError("configuration error: TANHUI_TOKEN_SECRET is not set")
                throw ExitStatus.couldNotRun
            }
            let tokens = await DeviceTokens(secret: secret)
            printLine(try await tokens.issue(citizen: UUID(uuidString: citizen)!, device: device, ttl: Self.seconds(ttl)!))
        }
    }
}
