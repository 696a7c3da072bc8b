import Foundation
import Testing

/// Runs the real `tanhui` binary (built by Scripts/test.sh) and other programs, bounded in time.
struct CommandResult: Sendable {
    var exitCode: Int32
    var stdout: String
    var stderr: String
    /// The command outran its bound and was stopped (also recorded as a test issue).
    var timedOut = false
}

enum CommandRunner {
    static var tanhuiBinary: String {
        if let path = ProcessInfo.processInfo.environment["TANHUI_BIN"], !path.isEmpty { return path }
        return repoRoot + "/.build/debug/tanhui"
    }

    static var repoRoot: String {
        if let root = ProcessInfo.processInfo.environment["TANHUI_REPO_ROOT"], !root.isEmpty { return root }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Runs `tanhui ARGS` with `DATABASE_URL` and extra environment; kills it after `timeout`.
    static func tanhui(
        _ arguments: [String],
        databaseURL: String?,
        environment: [String: String] = [:],
        stdin: String? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> CommandResult {
        var variables = ProcessInfo.processInfo.environment
        variables["DATABASE_URL"] = databaseURL
        variables["TANHUI_LOG_LEVEL"] = "warning"
        variables["TANHUI_TOKEN_SECRET"] = TestDatabase.tokenSecretBase64
        for (key, value) in environment { variables[key] = value }
        return try await run(tanhuiBinary, arguments, environment: variables, stdin: stdin, timeout: timeout)
    }

    static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        stdin: String? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let outPipe = Pipe()
        let errPipe = Pipe()
        let inPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inPipe
        try process.run()
        if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? inPipe.fileHandleForWriting.close()
        // Read both pipes on their own threads so a chatty child never blocks on a full pipe.
        async let out = readAll(outPipe.fileHandleForReading)
        async let err = readAll(errPipe.fileHandleForReading)
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now > deadline {
                // A command that outlives its bound is a failure, never a silent exit code.
                timedOut = true
                Issue.record("\(executable) \(arguments.prefix(3).joined(separator: " ")) … did not finish within \(timeout); stopped")
                process.terminate()
                let grace = ContinuousClock.now + .seconds(5)
                while process.isRunning && ContinuousClock.now < grace { try await Task.sleep(for: .milliseconds(20)) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.waitUntilExit()
        return CommandResult(exitCode: process.terminationStatus, stdout: await out, stderr: await err, timedOut: timedOut)
    }

    private static func readAll(_ handle: FileHandle) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let data = handle.readDataToEndOfFile()
                continuation.resume(returning: String(decoding: data, as: UTF8.self))
            }
        }
    }
}
