/// The one error type of the PostgreSQL layer.
///
/// It carries what an operator needs to diagnose a failure (SQLSTATE, server message,
/// detail, the operation that failed) but never the SQL text or parameter values, so it is
/// safe to log. HTTP adapters still map it to a generic problem: clients see no internals.
package struct PostgresError: Error, Sendable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        /// Could not open a connection (server down, bad URL, authentication).
        case connectionFailed
        /// The connection broke while in use (server restart, network).
        case connectionLost
        /// The server executed the statement and reported an error with a SQLSTATE.
        case server
        /// No pooled connection became free within the pool's acquire timeout.
        case poolTimeout
        /// The pool is shutting down.
        case poolClosed
        /// A value could not be encoded as a parameter or decoded from a column.
        case invalidValue
        /// libpq returned something this layer did not expect.
        case unexpectedResult
    }

    package var kind: Kind
    /// What this layer was doing: "connect", "query", "copy", "pipeline", "commit", …
    package var operation: String
    package var sqlState: String?
    package var message: String
    package var detail: String?

    package init(kind: Kind, operation: String, sqlState: String? = nil, message: String, detail: String? = nil) {
        self.kind = kind
        self.operation = operation
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
    }

    /// Serialization failure or deadlock: the whole transaction may be retried.
    package var isTransactionRetryable: Bool {
        sqlState == "40001" || sqlState == "40P01"
    }

    /// The database is unreachable or went away; callers answer "try again later".
    package var isUnavailable: Bool {
        switch kind {
        case .connectionFailed, .connectionLost, .poolTimeout, .poolClosed:
            return true
        case .server:
            // 08 connection exceptions, 57P0x operator intervention (shutdown, crash recovery),
            // 57014 a statement cancelled by its timeout (the database is saturated).
            guard let sqlState else { return false }
            return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03", "57014", "53300"].contains(sqlState)
        case .invalidValue, .unexpectedResult:
            return false
        }
    }

    /// A unique-constraint violation (SQLSTATE 23505).
    package var isUniqueViolation: Bool { sqlState == "23505" }

    package var description: String {
        var text = "PostgreSQL \(operation) failed"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let detail, !detail.isEmpty { text += " (\(detail))" }
        return text
    }
}
