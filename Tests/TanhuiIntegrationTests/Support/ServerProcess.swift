import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization

/// A real `tanhui serve` process on 127.0.0.1 with an OS-chosen port.
final class ServerProcess: Sendable {
    let process: Process
    let port: Int
    private let stderrText: Mutex<String>

    /// The role a test server connects as. Production serves as `tanhui_service` (created by
    /// migration 0002); the owner only migrates, so every server of the suite does the same.
    enum Role: String, Sendable {
        case service = "tanhui_service"
        case owner
    }

    /// `url` with its user replaced by `tanhui_service` (trust authentication on 127.0.0.1 in
    /// the test clusters, see Scripts/db.sh).
    static func serviceURL(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.user = Role.service.rawValue
        components.password = nil
        return components.string ?? url
    }

    /// Starts the server on an OS-chosen port (`--port 0`; a restart gets a new one) as
    /// `role`, and waits at most `startTimeout` for its "listening on" line.
    static func start(
        databaseURL: String, role: Role = .service, environment: [String: String] = [:],
        startTimeout: Duration = .seconds(60)
    ) async throws -> ServerProcess {
        var variables = ProcessInfo.processInfo.environment
        variables["DATABASE_URL"] = role == .service ? serviceURL(databaseURL) : databaseURL
        variables["TANHUI_LOG_LEVEL"] = "warning"
        variables["TANHUI_TOKEN_SECRET"] = TestDatabase.tokenSecretBase64
        for (key, value) in environment { variables[key] = value }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandRunner.tanhuiBinary)
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", "0"]
        process.environment = variables
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()

        // The reader thread reports the port (or end of output); a timer reports the deadline.
        // Whichever comes first decides, exactly once.
        let outcome = FirstOutcome()
        let port: Int? = await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
            outcome.onDecision { continuation.resume(returning: $0) }
            Thread.detachNewThread {
                var buffer = Data()
                let handle = outPipe.fileHandleForReading
                var reported = false
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty {
                        if !reported { outcome.decide(.exited, port: nil) }
                        return
                    }
                    if reported { continue }  // keep draining so the child never blocks on a full pipe
                    buffer.append(chunk)
                    let text = String(decoding: buffer, as: UTF8.self)
                    if let range = text.range(of: #"listening on http://[0-9.]+:([0-9]+)"#, options: .regularExpression) {
                        reported = true
                        outcome.decide(.listening, port: Int(text[range].split(separator: ":").last!))
                    }
                }
            }
            Task {
                try? await Task.sleep(for: startTimeout)
                outcome.decide(.timedOut, port: nil)
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
            let reason = outcome.decided
            if reason == .timedOut { server.signal(SIGKILL) }
            _ = await server.waitForExit(timeout: .seconds(30))
            throw ServerStartFailure(
                message:
                    "server did not start (\(reason.map { "\($0)" } ?? "?"), exit \(process.isRunning ? -1 : process.terminationStatus)): \(server.stderr)"
            )
        }
        return server
    }

    enum StartOutcome: Sendable { case listening, exited, timedOut }

    /// The first of several racing outcomes; later ones are ignored.
    final class FirstOutcome: Sendable {
        private let state = Mutex<(decided: StartOutcome?, port: Int?, waiter: (@Sendable (Int?) -> Void)?)>((nil, nil, nil))

        func onDecision(_ waiter: @escaping @Sendable (Int?) -> Void) {
            let ready: Int?? = state.withLock { state in
                if state.decided != nil { return .some(state.port) }
                state.waiter = waiter
                return .none
            }
            if let ready { waiter(ready) }
        }

        func decide(_ outcome: StartOutcome, port: Int?) {
            let waiter: (@Sendable (Int?) -> Void)? = state.withLock { state in
                guard state.decided == nil else { return nil }
                state.decided = outcome
                state.port = port
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?(port)
        }

        var decided: StartOutcome? { state.withLock { $0.decided } }
    }

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
        self.stderrText = Mutex("")
    }

    var stderr: String { stderrText.withLock { $0 } }

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

/// A bounded HTTP request to a real server process over loopback, through Hummingbird's
/// `TestClient` (the same client the in-process tests use), one connection per request.
struct HTTPReply: Sendable {
    /// Why no response came back.
    enum Failure: Sendable, Equatable {
        /// The connection was refused: the request never reached a server.
        case refused
        /// The request was sent but the connection closed without a response (the server
        /// died or dropped it).
        case lostInFlight
        /// No response within the request's timeout.
        case timedOut
    }

    var status: Int
    var headers: [String: String]
    var body: String
    /// nil when a response arrived (`status` > 0).
    var failure: Failure? = nil

    var lostInFlight: Bool { failure == .lostInFlight }
    var refused: Bool { failure == .refused }
    var timedOut: Bool { failure == .timedOut }
}

enum HTTPClient {
    static func request(
        _ method: String,
        _ url: String,
        headers: [String: String] = [:],
        body: Data? = nil,
        timeoutSeconds: Int = 30
    ) async throws -> HTTPReply {
        guard timeoutSeconds >= 1 else { throw ServerStartFailure(message: "HTTPClient.request needs a timeout of at least 1 s") }
        guard let components = URLComponents(string: url), let host = components.host, let port = components.port,
            let requestMethod = HTTPRequest.Method(method)
        else {
            throw ServerStartFailure(message: "HTTPClient.request: not an http://host:port URL or method: \(method) \(url)")
        }
        var target = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { target += "?" + query }
        var fields = HTTPFields()
        for (name, value) in headers {
            guard let field = HTTPField.Name(name) else { throw ServerStartFailure(message: "bad header name \(name)") }
            fields.append(HTTPField(name: field, value: value))
        }
        let client = TestClient(host: host, port: port, configuration: .init(timeout: .seconds(timeoutSeconds)))
        client.connect()
        var reply: HTTPReply
        do {
            _ = try await client.getChannel()
            do {
                let response = try await client.execute(
                    TestClient.Request(
                        target, method: requestMethod, authority: "\(host):\(port)", headers: fields, body: body.map { ByteBuffer(bytes: $0) })
                )
                var parsedHeaders: [String: String] = [:]
                for field in response.headers { parsedHeaders[field.name.canonicalName] = field.value }
                reply = HTTPReply(status: response.status.code, headers: parsedHeaders, body: response.body.map { String(buffer: $0) } ?? "")
            } catch TestClient.Error.readTimeout {
                reply = HTTPReply(status: 0, headers: [:], body: "", failure: .timedOut)
            } catch {
                reply = HTTPReply(status: 0, headers: [:], body: "\(error)", failure: .lostInFlight)
            }
        } catch {
            reply = HTTPReply(status: 0, headers: [:], body: "\(error)", failure: .refused)
        }
        try? await client.shutdown()
        capture(method: method, url: url, reply: reply)
        return reply
    }

    /// With TANHUI_CONTRACT_DIR set (Scripts/test.sh), every JSON response is saved so
    /// Scripts/check-openapi.py can check it against Schema/openapi.yaml.
    static func capture(method: String, url: String, reply: HTTPReply) {
        guard let directory = ProcessInfo.processInfo.environment["TANHUI_CONTRACT_DIR"], !directory.isEmpty,
            reply.status > 0, let contentType = reply.headers["content-type"], contentType.contains("json"),
            let parsed = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)),
            let path = URLComponents(string: url)?.path
        else { return }
        let record: [String: Any] = ["method": method, "path": path, "status": reply.status, "content_type": contentType, "body": parsed]
        guard let data = try? JSONSerialization.data(withJSONObject: record) else { return }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory + "/\(UUID().uuidString).json", contents: data)
    }
}

/// A raw HTTP/1.1 request over a plain socket whose response the client never reads: it sends
/// the request, lets the caller wait for whatever it needs (e.g. the commit to be visible in
/// the database), then resets the connection. This is a response lost after commit, made
/// deterministic (a client's timeouts cannot express "after the commit, before the response").
final class AbandonedRequest: Sendable {
    private let descriptor: Int32

    init(port: Int, method: String, path: String, headers: [String: String], body: Data) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerStartFailure(message: "socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw ServerStartFailure(message: "connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        var bytes = Data(head.utf8)
        bytes.append(body)
        var sent = 0
        while sent < bytes.count {
            let written = bytes.withUnsafeBytes { raw in send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else {
                close(fd)
                throw ServerStartFailure(message: "send failed: errno \(errno)")
            }
            sent += written
        }
        descriptor = fd
    }

    /// Resets the connection (SO_LINGER 0): whatever the server wrote is discarded unread.
    func abandon() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(descriptor)
    }
}
