import Foundation
import Logging
import Synchronization
import TanhuiPostgres

/// Group commit: concurrent pushes share one database transaction per round.
///
/// A push joins the queue; if fewer than `concurrentRounds` rounds are running, it leads one.
/// A leader takes queued batches in arrival order — at most one per citizen (the others
/// wait for a later round, so a citizen's batches still serialise), only batches of the same
/// provinces as the round's first (so on Citus a round of one-province batches is a
/// single-shard transaction, never a two-phase commit across workers), and at most
/// `maximumEventsPerRound` events — runs them as one `BatchRound` (one lock pipeline, one
/// read pipeline, one write pipeline, one COMMIT) and answers every member only after the
/// COMMIT. A round that fails for a reason other than the database being unavailable is
/// rerun member by member, so one batch can never fail another's.
final class GroupCommitter: Sendable {
    let pool: PostgresPool
    let ruleSets: RuleSetService
    let logger: Logger
    let concurrentRounds: Int
    static let maximumEventsPerRound = 2_000

    private struct Waiter: Sendable {
        let plan: BatchPlan
        let answer: @Sendable (Result<BatchPlan.Result, any Error>) -> Void
    }

    /// The answers of one `submit(_:)` call, resumed once: when every plan is answered, or at
    /// the first failure.
    private final class Answers: Sendable {
        private struct Pending {
            var results: [BatchPlan.Result?]
            var remaining: Int
            var continuation: CheckedContinuation<[BatchPlan.Result], any Error>?
        }
        private let pending: Mutex<Pending>

        init(count: Int, continuation: CheckedContinuation<[BatchPlan.Result], any Error>) {
            pending = Mutex(Pending(results: Array(repeating: nil, count: count), remaining: count, continuation: continuation))
        }

        func answer(_ index: Int, _ outcome: Result<BatchPlan.Result, any Error>) {
            let resume = pending.withLock { pending -> (CheckedContinuation<[BatchPlan.Result], any Error>, Result<[BatchPlan.Result], any Error>)? in
                guard let continuation = pending.continuation else { return nil }
                switch outcome {
                case .failure(let error):
                    pending.continuation = nil
                    return (continuation, .failure(error))
                case .success(let result):
                    pending.results[index] = result
                    pending.remaining -= 1
                    guard pending.remaining == 0 else { return nil }
                    pending.continuation = nil
                    return (continuation, .success(pending.results.map { $0! }))
                }
            }
            if let (continuation, result) = resume { continuation.resume(with: result) }
        }
    }

    private struct State {
        var queue: [Waiter] = []
        var runningRounds = 0
    }

    private let state = Mutex(State())
    /// Rounds rerun because the database decided a race against another transaction.
    let racesLost = Atomic<Int>(0)

    init(pool: PostgresPool, ruleSets: RuleSetService, logger: Logger, concurrentRounds: Int) {
        precondition(concurrentRounds >= 1)
        self.pool = pool
        self.ruleSets = ruleSets
        self.logger = logger
        self.concurrentRounds = concurrentRounds
    }

    func submit(_ plan: BatchPlan) async throws -> BatchPlan.Result {
        try await submit([plan])[0]
    }

    /// Queues many plans at once (a partner upload: one per citizen) and answers them in
    /// order. One continuation for all: a child task per plan made the task group's
    /// bookkeeping quadratic in the plans of an upload (`TaskGroup::removeChildTask`, 4 % of
    /// the server's samples for 5,000-record uploads; perf).
    func submit(_ plans: [BatchPlan]) async throws -> [BatchPlan.Result] {
        guard !plans.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            let answers = Answers(count: plans.count, continuation: continuation)
            let leaders = state.withLock { state -> Int in
                for (index, plan) in plans.enumerated() {
                    state.queue.append(Waiter(plan: plan, answer: { answers.answer(index, $0) }))
                }
                // runningRounds never exceeds concurrentRounds, so this is never negative.
                let leaders = min(concurrentRounds - state.runningRounds, plans.count)
                state.runningRounds += leaders
                return leaders
            }
            for _ in 0..<leaders { Task { await self.lead() } }
        }
    }

    /// Runs rounds until the queue is empty.
    private func lead() async {
        while let round = nextRound() {
            await run(round)
        }
    }

    private func nextRound() -> [Waiter]? {
        state.withLock { state in
            var taken: [Waiter] = []
            var remaining: [Waiter] = []
            var citizens = Set<UUID>()
            var events = 0
            var roundProvinces: [String] = []
            for waiter in state.queue {
                let provinces = waiter.plan.provinces
                let fits = taken.isEmpty || (events + waiter.plan.inputs.count <= Self.maximumEventsPerRound && provinces == roundProvinces)
                if fits && !citizens.contains(waiter.plan.citizen) {
                    if taken.isEmpty { roundProvinces = provinces }
                    taken.append(waiter)
                    citizens.insert(waiter.plan.citizen)
                    events += waiter.plan.inputs.count
                } else {
                    remaining.append(waiter)
                }
            }
            state.queue = remaining
            if taken.isEmpty {
                state.runningRounds -= 1
                return nil
            }
            return taken
        }
    }

    private func run(_ waiters: [Waiter]) async {
        do {
            let results = try await execute(waiters.map(\.plan))
            for (waiter, result) in zip(waiters, results) { waiter.answer(.success(result)) }
        } catch let error as PostgresError where waiters.count > 1 && !error.isUnavailable {
            logger.debug(
                "round failed; rerunning its members alone", metadata: ["db.sqlstate": "\(error.sqlState ?? "")", "members": "\(waiters.count)"])
            for waiter in waiters {
                do {
                    waiter.answer(.success(try await execute([waiter.plan])[0]))
                } catch {
                    waiter.answer(.failure(error))
                }
            }
        } catch {
            for waiter in waiters { waiter.answer(.failure(error)) }
        }
    }

    /// One bounded retry policy: serialization failures, deadlocks, and lost races on the
    /// database's guarantees (unique ids, evidence, overlap: 23505, 23P01, e.g. against
    /// another `serve` process) rerun the whole round, which then sees the winner's rows; at
    /// most 5 attempts in all.
    private func execute(_ members: [BatchPlan]) async throws -> [BatchPlan.Result] {
        let round = BatchRound(members: members, ruleSets: ruleSets)
        let isLostRace: @Sendable (PostgresError) -> Bool = { [self] error in
            let lostRace = error.isUniqueViolation || error.sqlState == "23P01"
            if lostRace {
                racesLost.add(1, ordering: .relaxed)
                logger.debug("round lost a race; rerunning", metadata: ["db.sqlstate": "\(error.sqlState ?? "")"])
            }
            return lostRace
        }
        return try await pool.withTransaction(alsoRetrying: isLostRace) { connection in
            try round.execute(on: connection)
        }
    }
}
