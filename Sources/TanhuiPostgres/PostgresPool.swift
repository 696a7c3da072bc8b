package import Logging
import NIOPosix
import Synchronization

/// A bounded pool of libpq connections with async checkout.
///
/// Work on a connection is a synchronous closure run on the pool's own `NIOThreadPool`, so
/// blocking libpq calls never occupy Swift's cooperative threads. A waiter that finds the pool
/// exhausted waits at most `acquireTimeout` and then gets `.poolTimeout`; it never hangs.
/// A connection whose socket shows the server went away is closed and replaced on checkout,
/// and one that breaks during use is discarded, never returned to the pool.
package final class PostgresPool: Sendable {
    package struct Configuration: Sendable {
        package var connection: PostgresConnectionSettings
        package var maximumConnections: Int
        package var acquireTimeout: Duration
        /// Connections idle longer than this run `SELECT 1` before reuse.
        package var idleCheckAfter: Duration

        package init(
            connection: PostgresConnectionSettings,
            maximumConnections: Int = 8,
            acquireTimeout: Duration = .seconds(5),
            idleCheckAfter: Duration = .seconds(30)
        ) {
            precondition(maximumConnections >= 1, "a pool needs at least one connection")
            self.connection = connection
            self.maximumConnections = maximumConnections
            self.acquireTimeout = acquireTimeout
            self.idleCheckAfter = idleCheckAfter
        }
    }

    package enum Isolation: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    /// What a waiter receives: an idle connection, or the right to open a new one.
    private enum Grant: Sendable {
        case connection(PostgresConnection)
        case openNew
    }

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Grant, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        var openCount = 0
        var inUse = 0
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
    }

    /// Counts for metrics and `/readyz`.
    package struct Usage: Sendable {
        package var open: Int
        package var inUse: Int
        package var waiting: Int
        package var maximum: Int
    }

    package let configuration: Configuration
    private let state = Mutex(State())
    private let threads: NIOThreadPool
    private let logger: Logger

    package init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.threads = NIOThreadPool(numberOfThreads: configuration.maximumConnections)
        threads.start()
    }

    package var usage: Usage {
        state.withLock { state in
            Usage(open: state.openCount, inUse: state.inUse, waiting: state.waiters.count, maximum: configuration.maximumConnections)
        }
    }

    /// Runs blocking work that holds no pooled connection (a caller's own connection, such as
    /// the audit's snapshot coordinator) on the pool's blocking threads, never on Swift's
    /// cooperative pool.
    package func runBlocking<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
        do {
            return try await threads.runIfActive(body)
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw PostgresError(kind: .poolClosed, operation: "run", message: "the connection pool is shut down")
        }
    }

    /// Runs `body` with exclusive use of one connection, on the blocking thread pool.
    @discardableResult
    package func withConnection<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws -> Result
    ) async throws -> Result {
        let grant = try await acquire()
        let settings = configuration.connection
        let idleCheckAfter = configuration.idleCheckAfter
        let outcome: Outcome<Result>
        do {
            outcome = try await threads.runIfActive { () -> Outcome<Result> in
                var connection: PostgresConnection
                switch grant {
                case .connection(let existing):
                    connection = existing
                    if !Self.isHealthy(existing, idleCheckAfter: idleCheckAfter) {
                        existing.close()
                        connection = try PostgresConnection.connect(settings)
                    }
                case .openNew:
                    connection = try PostgresConnection.connect(settings)
                }
                do {
                    return Outcome(connection: connection, value: .success(try body(connection)))
                } catch {
                    return Outcome(connection: connection, value: .failure(error))
                }
            }
        } catch {
            // Connecting failed, or the thread pool is shut down: give the slot back.
            release(nil)
            if let error = error as? PostgresError { throw error }
            throw PostgresError(kind: .poolClosed, operation: "acquire", message: "the connection pool is shut down")
        }
        release(outcome.connection.isOpen ? outcome.connection : nil)
        return try outcome.value.get()
    }

    private struct Outcome<Value: Sendable>: Sendable {
        let connection: PostgresConnection
        let value: Result<Value, any Error>
    }

    private static func isHealthy(_ connection: PostgresConnection, idleCheckAfter: Duration) -> Bool {
        guard connection.isAlive() else { return false }
        if ContinuousClock.now - connection.lastUsed > idleCheckAfter {
            return (try? connection.query("SELECT 1")) != nil
        }
        return true
    }

    /// Runs `body` inside BEGIN … COMMIT on one connection.
    ///
    /// Any thrown error rolls back. Serialization failures and deadlocks (40001, 40P01) rerun
    /// the whole closure, up to `maximumAttempts` times in all, with a short jittered pause;
    /// the closure must therefore be safe to run again (no effects outside the database).
    @discardableResult
    package func withTransaction<Result: Sendable>(
        isolation: Isolation = .readCommitted,
        maximumAttempts: Int = 5,
        alsoRetrying retryable: @escaping @Sendable (PostgresError) -> Bool = { _ in false },
        _ body: @escaping @Sendable (PostgresConnection) throws -> Result
    ) async throws -> Result {
        precondition(maximumAttempts >= 1)
        var attempt = 1
        while true {
            do {
                return try await withConnection { connection in
                    try connection.query(PostgresQuery(stringLiteral: "BEGIN ISOLATION LEVEL " + isolation.rawValue))
                    do {
                        let value = try body(connection)
                        try connection.query("COMMIT")
                        return value
                    } catch {
                        if connection.isOpen { _ = try? connection.query("ROLLBACK") }
                        throw error
                    }
                }
            } catch let error as PostgresError where (error.isTransactionRetryable || retryable(error)) && attempt < maximumAttempts {
                logger.debug("retrying transaction", metadata: ["db.sqlstate": "\(error.sqlState ?? "")", "db.attempt": "\(attempt)"])
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << min(attempt, 6)))))
            }
        }
    }

    /// Closes idle connections and fails new checkouts; in-flight work finishes first.
    package func shutdown() async {
        let (idle, waiters) = state.withLock { state -> ([PostgresConnection], [Waiter]) in
            state.closed = true
            defer {
                state.openCount -= state.idle.count
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: PostgresError(kind: .poolClosed, operation: "acquire", message: "the connection pool is shut down"))
        }
        for connection in idle { connection.close() }
        try? await threads.shutdownGracefully()
    }

    // MARK: Checkout

    private func acquire() async throws -> Grant {
        enum Immediate {
            case grant(Grant)
            case wait(UInt64)
            case closed
        }
        let immediate = state.withLock { state -> Immediate in
            if state.closed { return .closed }
            if let connection = state.idle.popLast() {
                state.inUse += 1
                return .grant(.connection(connection))
            }
            if state.openCount < configuration.maximumConnections {
                state.openCount += 1
                state.inUse += 1
                return .grant(.openNew)
            }
            state.nextWaiterID += 1
            return .wait(state.nextWaiterID)
        }
        switch immediate {
        case .closed:
            throw PostgresError(kind: .poolClosed, operation: "acquire", message: "the connection pool is shut down")
        case .grant(let grant):
            return grant
        case .wait(let id):
            let timeout = configuration.acquireTimeout
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                self?.expireWaiter(id)
            }
            defer { timer.cancel() }
            return try await withCheckedThrowingContinuation { continuation in
                // The slot may have freed between the check above and now: re-check under the lock.
                let ready = state.withLock { state -> Grant? in
                    if let connection = state.idle.popLast() {
                        state.inUse += 1
                        return .connection(connection)
                    }
                    if state.openCount < configuration.maximumConnections {
                        state.openCount += 1
                        state.inUse += 1
                        return .openNew
                    }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }

    private func expireWaiter(_ id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(
            throwing: PostgresError(
                kind: .poolTimeout,
                operation: "acquire",
                message: "no database connection became free within \(configuration.acquireTimeout) (pool of \(configuration.maximumConnections))"
            ))
    }

    /// Returns a connection (nil: it broke or never opened, so its slot frees up).
    private func release(_ connection: PostgresConnection?) {
        enum Next {
            case give(Waiter, Grant)
            case close(PostgresConnection)
            case nothing
        }
        let next = state.withLock { state -> Next in
            state.inUse -= 1
            if !state.waiters.isEmpty {
                let waiter = state.waiters.removeFirst()
                state.inUse += 1
                if let connection { return .give(waiter, .connection(connection)) }
                return .give(waiter, .openNew)
            }
            guard let connection else {
                state.openCount -= 1
                return .nothing
            }
            if state.closed {
                state.openCount -= 1
                return .close(connection)
            }
            state.idle.append(connection)
            return .nothing
        }
        switch next {
        case .give(let waiter, let grant): waiter.continuation.resume(returning: grant)
        case .close(let connection): connection.close()
        case .nothing: break
        }
    }
}
