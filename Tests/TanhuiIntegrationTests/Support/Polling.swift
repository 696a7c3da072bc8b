import Foundation
import Synchronization
import Testing

/// Event-driven waits: poll a condition until it holds or a deadline passes. The deadline is
/// a bound on a wait, never an assertion about how long something took; a condition that is
/// still false at the deadline is reported (and returned) as a failure of that condition.
enum Poll {
    /// Polls `condition` every `interval` until it is true or `timeout` passes; records an
    /// issue naming `what` and returns false if it never held.
    @discardableResult
    static func until(
        _ what: @autoclosure () -> String,
        timeout: Duration = .seconds(60),
        interval: Duration = .milliseconds(20),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await condition() { return true }
            if ContinuousClock.now >= deadline {
                Issue.record("condition never held: \(what())", sourceLocation: sourceLocation)
                return false
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Like `until`, without recording an issue: for conditions a caller handles itself.
    static func holds(timeout: Duration, interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Shared mutable state for concurrent test tasks (a class, so closures capture a reference).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
