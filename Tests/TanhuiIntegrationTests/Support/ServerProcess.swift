import Foundation
import Synchronization

/// A real `tanhui serve` process on 127.0.0.1 with an OS-chosen port.
final class ServerProcess: Sendable {
    let process: Process
    let port: Int
    private let stderrText: Mutex<String>

    /// Starts the server and waits (bounded) for its "listening on" line.
    static func start(databaseURL: String, port requestedPort: Int = 0, environment: [String: String] = [:]) async throws -> ServerProcess {
        var variables = ProcessInfo.processInfo.environment
        variables["DATABASE_URL"] = databaseURL
        variables["TANHUI_LOG_LEVEL"] = "warning"
        variables["TANHUI_TOKEN_SECRET"] = TestDatabase.tokenSecretBase64
        for (key, value) in environment { variables[key] = value }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandRunner.tanhuiBinary)
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", String(requestedPort)]
        process.environment = variables
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()

        let port: Int? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var buffer = Data()
                let handle = outPipe.fileHandleForReading
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { continuation.resume(returning: nil); return }
                    buffer.append(chunk)
                    let text = String(decoding: buffer, as: UTF8.self)
                    if let range = text.range(of: #"listening on http://[0-9.]+:([0-9]+)"#, options: .regularExpression) {
                        let port = Int(text[range].split(separator: ":").last!)
                        continuation.resume(returning: port)
                        // Keep draining so the child never blocks on a full pipe.
                        while !handle.availableData.isEmpty {}
                        return
                    }
                }
            }
        }
        let server = ServerProcess(process: process, port: port ?? 0)
        Thread.detachNewThread {
            let handle = errPipe.fileHandleForReading
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                server.stderrText.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
            }
        }
        guard let port, port > 0 else {
            process.waitUntilExit()
            throw ServerStartFailure(message: "server did not start (exit \(process.terminationStatus)): \(server.stderr)")
        }
        return server
    }

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
        self.stderrText = Mutex("")
    }

    var stderr: String { stderrText.withLock { $0 } }

    /// A port that was free a moment ago, for servers restarted on the same address.
    static func freePort() throws -> Int {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketFD) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, length) == 0 && getsockname(socketFD, $0, &length) == 0 }
        }
        guard bound else { throw ServerStartFailure(message: "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
    var baseURL: String { "http://127.0.0.1:\(port)" }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for exit, bounded; returns the exit status or nil if still running.
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    func stop() async {
        if process.isRunning {
            signal(SIGTERM)
            if await waitForExit(timeout: .seconds(10)) == nil { signal(SIGKILL) }
        }
    }
}

struct ServerStartFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A bounded HTTP request through curl, a real client over loopback.
struct HTTPReply: Sendable {
    var status: Int
    var headers: [String: String]
    var body: String
}

enum HTTPClient {
    static func request(
        _ method: String,
        _ url: String,
        headers: [String: String] = [:],
        body: Data? = nil,
        timeoutSeconds: Int = 30
    ) async throws -> HTTPReply {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tanhui-http-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let headerFile = directory.appendingPathComponent("headers").path
        let bodyFile = directory.appendingPathComponent("body").path
        var arguments = ["-s", "-X", method, "--max-time", String(timeoutSeconds), "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"]
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if let body {
            let requestFile = directory.appendingPathComponent("request").path
            _ = FileManager.default.createFile(atPath: requestFile, contents: body)
            arguments += ["--data-binary", "@" + requestFile]
        }
        arguments.append(url)
        let result = try await CommandRunner.run("/usr/bin/curl", arguments, timeout: .seconds(timeoutSeconds + 5))
        var parsedHeaders: [String: String] = [:]
        if let text = try? String(contentsOfFile: headerFile, encoding: .utf8) {
            for line in text.split(whereSeparator: \.isNewline) {
                guard let colon = line.firstIndex(of: ":") else { continue }
                parsedHeaders[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let body = (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? ""
        let reply = HTTPReply(status: Int(result.stdout) ?? 0, headers: parsedHeaders, body: body)
        capture(method: method, url: url, reply: reply)
        return reply
    }

    /// With TANHUI_CONTRACT_DIR set (Scripts/test.sh), every JSON response is saved so
    /// Scripts/check-openapi.py can check it against Schema/openapi.yaml.
    static func capture(method: String, url: String, reply: HTTPReply) {
        guard let directory = ProcessInfo.processInfo.environment["TANHUI_CONTRACT_DIR"], !directory.isEmpty,
              reply.status > 0, let contentType = reply.headers["content-type"], contentType.contains("json"),
              let parsed = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)),
              let path = URLComponents(string: url)?.path else { return }
        let record: [String: Any] = ["method": method, "path": path, "status": reply.status, "content_type": contentType, "body": parsed]
        guard let data = try? JSONSerialization.data(withJSONObject: record) else { return }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory + "/\(UUID().uuidString).json", contents: data)
    }
}
