import ArgumentParser
import Hummingbird
import Logging
import ServiceLifecycle
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP API (stops gracefully on SIGTERM or SIGINT)."
    )

    @Option(help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(help: "Port to bind (0 picks a free one; the bound port is printed).")
    var port = 8080

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535") }
    }

    func run() async throws {
        let services = try CommandEnvironment.services(label: "tanhui.serve")
        guard let secret = services.config.tokenSecret else {
            printError("configuration error: TANHUI_TOKEN_SECRET is not set (base64 of 32 or more random bytes; Scripts/start.sh generates one)")
            await services.shutdown()
            throw ExitStatus.couldNotRun
        }
        let tokens = await DeviceTokens(secret: secret)
        let metrics = TanhuiMetrics()
        metrics.bootstrapProcessMetrics()
        // Refuse to serve a schema this binary does not match.
        do {
            let status = try await services.migrator.status()
            guard status.isCurrent else {
                if !status.pending.isEmpty { printError("migrations pending: \(status.pending.joined(separator: ", ")); run `tanhui migrate` first") }
                if !status.changed.isEmpty { printError("applied migrations changed since they ran: \(status.changed.joined(separator: ", "))") }
                await services.shutdown()
                throw ExitStatus.couldNotRun
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("cannot check the schema: \(error)")
            await services.shutdown()
            throw ExitStatus.couldNotRun
        }

        let host = self.host
        let app = TanhuiApplication.build(services: services, tokens: tokens, metrics: metrics, host: host, port: port) { boundPort in
            printLine("tanhui listening on http://\(host):\(boundPort)")
        }
        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse order: the HTTP server drains first, then the sealer seals what it committed.
                services: [
                    LedgerSealer(ledger: services.ledger, interval: .milliseconds(services.config.sealIntervalMilliseconds), logger: services.logger),
                    ReportRoller(
                        reports: services.reports, metrics: metrics, interval: .milliseconds(services.config.sealIntervalMilliseconds),
                        logger: services.logger),
                    RedemptionExpirer(redemptions: services.redemptions, interval: .seconds(1), logger: services.logger),
                    app,
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: services.logger
            ).withShutdownBound(seconds: services.config.shutdownTimeoutSeconds))
        do {
            try await group.run()
        } catch {
            printError("server stopped: \(error)")
            await services.shutdown()
            throw ExitStatus.couldNotRun
        }
        await services.shutdown()
    }
}

extension ServiceGroupConfiguration {
    /// After this long, in-flight work is cancelled so the process exits within its bound.
    func withShutdownBound(seconds: Int) -> Self {
        var configuration = self
        configuration.maximumGracefulShutdownDuration = .seconds(seconds)
        return configuration
    }
}
