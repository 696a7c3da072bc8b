import CLibPQ
import Foundation

/// Settings applied to every connection the layer opens.
package struct PostgresConnectionSettings: Sendable {
    /// libpq URI or conninfo string (`DATABASE_URL`).
    package var url: String
    /// libpq rounds values below 2 up to 2 seconds.
    package var connectTimeoutSeconds: Int
    /// Server-side `statement_timeout`; 0 disables it.
    package var statementTimeoutMilliseconds: Int
    package var applicationName: String

    package init(url: String, connectTimeoutSeconds: Int = 5, statementTimeoutMilliseconds: Int = 30_000, applicationName: String = "tanhui") {
        self.url = url
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        self.applicationName = applicationName
    }
}

/// One libpq connection. Every call blocks the calling thread.
///
/// Only the pool creates these and it hands each to one borrower at a time, on a thread of
/// its blocking thread pool, never on Swift's cooperative pool; that exclusive hand-over is
/// why the class may be `@unchecked Sendable`.
package final class PostgresConnection: @unchecked Sendable {
    private var handle: OpaquePointer?
    /// When the connection last finished a statement; the pool re-checks idle ones.
    var lastUsed: ContinuousClock.Instant

    private init(handle: OpaquePointer) {
        self.handle = handle
        self.lastUsed = .now
    }

    deinit { close() }

    /// Opens a connection; the URL's own settings override the defaults given here.
    package static func connect(_ settings: PostgresConnectionSettings) throws(PostgresError) -> PostgresConnection {
        // Defaults come before `dbname` so that values inside the URL win (expand_dbname).
        let options = "-c statement_timeout=\(settings.statementTimeoutMilliseconds) -c TimeZone=UTC -c DateStyle=ISO,YMD"
        let pairs: [(String, String)] = [
            ("connect_timeout", String(settings.connectTimeoutSeconds)),
            ("application_name", settings.applicationName),
            ("client_encoding", "UTF8"),
            ("options", options),
            ("dbname", settings.url),
        ]
        let handle = withCStrings(pairs.map(\.0)) { keywords in
            withCStrings(pairs.map(\.1)) { values in
                PQconnectdbParams(keywords, values, 1)
            }
        }
        guard let handle else {
            throw PostgresError(kind: .connectionFailed, operation: "connect", message: "libpq could not allocate a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = lastErrorMessage(handle)
            PQfinish(handle)
            throw PostgresError(kind: .connectionFailed, operation: "connect", message: message)
        }
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
        let connection = PostgresConnection(handle: handle)
        // Server-side settings that a URL must not override.
        _ = try connection.query("SET TIME ZONE 'UTC'")
        return connection
    }

    /// Whether libpq still considers the connection open.
    package var isOpen: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Cheap liveness check: reads whatever the server sent while the connection sat idle.
    /// A server restart leaves an error or end-of-file on the socket, which this detects.
    /// A shutting-down server first sends an error, then closes: keep reading while the
    /// socket is readable so the end-of-file after the error is seen too.
    func isAlive() -> Bool {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return false }
        for _ in 0..<4 {
            if PQconsumeInput(handle) == 0 || PQstatus(handle) != CONNECTION_OK { return false }
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 0) <= 0 { break }
        }
        return PQstatus(handle) == CONNECTION_OK && PQtransactionStatus(handle) == PQTRANS_IDLE
    }

    package func close() {
        if let handle {
            PQfinish(handle)
            self.handle = nil
        }
    }

    private func requireHandle(_ operation: String) throws(PostgresError) -> OpaquePointer {
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError(kind: .connectionLost, operation: operation, message: "connection is closed")
        }
        return handle
    }

    // MARK: Statements

    /// Runs one parameterised statement and materialises its result.
    @discardableResult
    package func query(_ query: PostgresQuery) throws(PostgresError) -> PostgresResult {
        let handle = try requireHandle("query")
        try checkParameters(query.parameters)
        let result = withOptionalCStrings(query.parameters) { values in
            PQexecParams(handle, query.sql, Int32(values.count), nil, values, nil, nil, 0)
        }
        defer { lastUsed = .now }
        return try consume(result, operation: "query")
    }

    /// Runs a trusted multi-statement script (migration files shipped with the binary).
    /// It takes no parameters by design: nothing from a request may reach it.
    package func executeTrustedScript(_ script: String) throws(PostgresError) {
        let handle = try requireHandle("script")
        var failure: PostgresError?
        var result = PQexec(handle, script)
        // PQexec returns the last result; errors stop the script.
        if result == nil {
            failure = connectionError(handle, operation: "script")
        } else {
            let status = PQresultStatus(result)
            if status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY {
                failure = serverError(result, handle: handle, operation: "script")
            }
            PQclear(result)
            result = nil
        }
        lastUsed = .now
        if let failure { throw failure }
    }

    /// Sends many statements in one round trip with libpq's pipeline mode.
    ///
    /// Statements run in order; the first failure aborts the rest (libpq skips them), and
    /// that failure is thrown. Run inside `withTransaction` for all-or-nothing effects.
    package func pipeline(_ queries: [PostgresQuery]) throws(PostgresError) -> [PostgresResult] {
        let handle = try requireHandle("pipeline")
        guard !queries.isEmpty else { return [] }
        for query in queries { try checkParameters(query.parameters) }
        guard PQenterPipelineMode(handle) == 1 else {
            throw connectionError(handle, operation: "pipeline")
        }
        defer {
            PQexitPipelineMode(handle)
            lastUsed = .now
        }
        for query in queries {
            let sent = withOptionalCStrings(query.parameters) { values in
                PQsendQueryParams(handle, query.sql, Int32(values.count), nil, values, nil, nil, 0)
            }
            guard sent == 1 else { throw connectionError(handle, operation: "pipeline") }
        }
        guard PQpipelineSync(handle) == 1 else { throw connectionError(handle, operation: "pipeline") }

        var results: [PostgresResult] = []
        results.reserveCapacity(queries.count)
        var firstFailure: PostgresError?
        // Each statement yields its result then NULL; the sync point yields PIPELINE_SYNC.
        while true {
            guard let result = PQgetResult(handle) else {
                if PQstatus(handle) != CONNECTION_OK { throw connectionError(handle, operation: "pipeline") }
                continue
            }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_SYNC {
                PQclear(result)
                break
            }
            if status == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                continue
            }
            do {
                results.append(try consume(result, operation: "pipeline"))
            } catch {
                if firstFailure == nil { firstFailure = error }
            }
        }
        if let firstFailure { throw firstFailure }
        guard results.count == queries.count else {
            throw PostgresError(kind: .unexpectedResult, operation: "pipeline", message: "expected \(queries.count) results, got \(results.count)")
        }
        return results
    }

    /// Streams rows into `COPY … FROM STDIN` (text format). Returns the rows copied.
    ///
    /// Each row is an array of column values, nil for NULL; values are escaped here.
    @discardableResult
    package func copyIn(_ statement: PostgresQuery, rows: some Sequence<[String?]>) throws(PostgresError) -> Int {
        let handle = try requireHandle("copy")
        let start = withOptionalCStrings(statement.parameters) { values in
            PQexecParams(handle, statement.sql, Int32(values.count), nil, values, nil, nil, 0)
        }
        guard let start, PQresultStatus(start) == PGRES_COPY_IN else {
            return try consume(start, operation: "copy").affectedRows
        }
        PQclear(start)
        defer { lastUsed = .now }

        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        var sendFailure: PostgresError?
        func flush() -> Bool {
            guard !buffer.isEmpty else { return true }
            let sent = buffer.withUnsafeBufferPointer { pointer in
                pointer.withMemoryRebound(to: CChar.self) { chars in
                    PQputCopyData(handle, chars.baseAddress, Int32(chars.count))
                }
            }
            buffer.removeAll(keepingCapacity: true)
            return sent == 1
        }
        rowLoop: for row in rows {
            for (index, value) in row.enumerated() {
                if index > 0 { buffer.append(9) }
                guard let value else {
                    buffer.append(contentsOf: [92, 78])  // \N
                    continue
                }
                for byte in value.utf8 {
                    switch byte {
                    case 0:
                        sendFailure = PostgresError(kind: .invalidValue, operation: "copy", message: "text value contains a NUL byte")
                        break rowLoop
                    case 92: buffer.append(contentsOf: [92, 92])
                    case 9: buffer.append(contentsOf: [92, 116])
                    case 10: buffer.append(contentsOf: [92, 110])
                    case 13: buffer.append(contentsOf: [92, 114])
                    default: buffer.append(byte)
                    }
                }
            }
            buffer.append(10)
            if buffer.count >= 1 << 16, !flush() {
                sendFailure = connectionError(handle, operation: "copy")
                break
            }
        }
        if sendFailure == nil, !flush() {
            sendFailure = connectionError(handle, operation: "copy")
        }
        // Ending with an error message makes the server abort the COPY, so nothing lands.
        let ended: Int32
        if let sendFailure {
            ended = PQputCopyEnd(handle, sendFailure.message)
        } else {
            ended = PQputCopyEnd(handle, nil)
        }
        guard ended == 1 else { throw connectionError(handle, operation: "copy") }
        var copied = 0
        var failure: PostgresError?
        while let result = PQgetResult(handle) {
            do {
                copied = try consume(result, operation: "copy").affectedRows
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let sendFailure { throw sendFailure }
        if let failure { throw failure }
        return copied
    }

    // MARK: Results

    /// Converts a PGresult into a Swift value (or error) and frees it.
    private func consume(_ result: OpaquePointer?, operation: String) throws(PostgresError) -> PostgresResult {
        guard let result else {
            throw connectionError(handle, operation: operation)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            defer { PQclear(result) }
            return PostgresResult(columnNames: [], rows: [], affectedRows: affectedRows(result))
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            // The rows read their cells in place; the PGresult is freed with the last of them.
            let cells = ResultCells(result)
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            var names: [String] = []
            names.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                names.append(String(cString: PQfname(result, Int32(column))))
            }
            let index = ColumnIndex(names: names)
            var rows: [PostgresRow] = []
            rows.reserveCapacity(rowCount)
            for row in 0..<rowCount {
                rows.append(PostgresRow(cells: cells, row: Int32(row), columns: index))
            }
            return PostgresResult(columnNames: names, rows: rows, affectedRows: rowCount)
        default:
            defer { PQclear(result) }
            throw serverError(result, handle: handle, operation: operation)
        }
    }

    private func affectedRows(_ result: OpaquePointer) -> Int {
        Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    private func checkParameters(_ parameters: [String?]) throws(PostgresError) {
        for case var value? in parameters where Self.containsNUL(&value) {
            throw PostgresError(kind: .invalidValue, operation: "query", message: "text parameter contains a NUL byte")
        }
    }

    /// `memchr` over the contiguous UTF-8: array parameters run to megabytes per round, and
    /// `utf8.contains(0)` walked them byte by byte (3 % of the server's CPU in a partner upload).
    static func containsNUL(_ value: inout String) -> Bool {
        value.withUTF8 { buffer in
            guard let base = buffer.baseAddress else { return false }
            return memchr(base, 0, buffer.count) != nil
        }
    }

    private func serverError(_ result: OpaquePointer?, handle: OpaquePointer?, operation: String) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let pointer = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: pointer)
        }
        let sqlState = field("C")
        let message = field("M") ?? String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
        let broken = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
        return PostgresError(
            kind: broken && sqlState == nil ? .connectionLost : .server,
            operation: operation,
            sqlState: sqlState,
            message: message.isEmpty ? "server reported an error" : message,
            detail: field("D")
        )
    }

    private func connectionError(_ handle: OpaquePointer?, operation: String) -> PostgresError {
        let message = handle.map(Self.lastErrorMessage) ?? "connection is closed"
        return PostgresError(kind: .connectionLost, operation: operation, message: message)
    }

    private static func lastErrorMessage(_ handle: OpaquePointer) -> String {
        guard let pointer = PQerrorMessage(handle) else { return "unknown libpq error" }
        let text = String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown libpq error" : text
    }
}

// MARK: C string helpers

private func withCStrings<Result>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> Result) -> Result {
    let duplicates = strings.map { strdup($0) }
    defer { for duplicate in duplicates { free(duplicate) } }
    var pointers: [UnsafePointer<CChar>?] = duplicates.map { UnsafePointer($0) }
    pointers.append(nil)
    return body(pointers)
}

private func withOptionalCStrings<Result>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> Result) -> Result {
    let duplicates: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for duplicate in duplicates { free(duplicate) } }
    return body(duplicates.map { $0.map { UnsafePointer($0) } })
}
