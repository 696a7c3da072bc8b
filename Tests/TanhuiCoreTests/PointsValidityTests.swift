import Foundation
import Testing

@testable import TanhuiCore

@Suite struct PointsValidityTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    let urumqi = TimeZone(identifier: "Asia/Urumqi")!

    func expiry(_ rule: PointsValidity, _ occurred: String, _ zone: TimeZone) -> String {
        Timestamp.textUTC(milliseconds: rule.expiresAtMs(occurredMs: Instant.milliseconds(at(occurred)), timeZone: zone))
    }

    @Test func monthsLiveThroughTheSameLocalDayAndExpireAtTheNextLocalMidnight() {
        // 15 March 10:00 Beijing time + 1 month: lives through 15 April, expires 16 April 00:00 +08:00.
        #expect(expiry(.months(1), "2027-03-15T10:00:00+08:00", shanghai) == "2027-04-15T16:00:00.000Z")
        #expect(expiry(.months(12), "2027-03-15T10:00:00+08:00", shanghai) == "2028-03-15T16:00:00.000Z")
        #expect(expiry(.months(120), "2027-03-15T10:00:00+08:00", shanghai) == "2037-03-15T16:00:00.000Z")
        // Across a year end.
        #expect(expiry(.months(2), "2027-11-30T12:00:00+08:00", shanghai) == "2028-01-30T16:00:00.000Z")
    }

    @Test func monthEndsClampToTheTargetMonthsLastDay() {
        // 31 January + 1 month → lives through 28 February (2027 is not a leap year).
        #expect(expiry(.months(1), "2027-01-31T09:00:00+08:00", shanghai) == "2027-02-28T16:00:00.000Z")
        // In a leap year through 29 February.
        #expect(expiry(.months(1), "2028-01-31T09:00:00+08:00", shanghai) == "2028-02-29T16:00:00.000Z")
        // 31 August + 1 month → 30 September.
        #expect(expiry(.months(1), "2027-08-31T09:00:00+08:00", shanghai) == "2027-09-30T16:00:00.000Z")
    }

    @Test func february29() {
        // Earned on 29 Feb 2028: + 12 months lives through 28 Feb 2029; + 48 months through 29 Feb 2032.
        #expect(expiry(.months(12), "2028-02-29T12:00:00+08:00", shanghai) == "2029-02-28T16:00:00.000Z")
        #expect(expiry(.months(48), "2028-02-29T12:00:00+08:00", shanghai) == "2032-02-29T16:00:00.000Z")
        #expect(expiry(.endOfYearAfter(0), "2028-02-29T12:00:00+08:00", shanghai) == "2028-12-31T16:00:00.000Z")
    }

    @Test func theLocalDateDecidesNotTheUTCDate() {
        // 1 April 00:30 in Beijing is still 31 March in UTC: the lot counts from 1 April.
        #expect(expiry(.months(1), "2027-04-01T00:30:00+08:00", shanghai) == "2027-05-01T16:00:00.000Z")
        // The same instant in UTC terms only: 31 March + 1 month → 30 April.
        #expect(expiry(.months(1), "2027-04-01T00:30:00+08:00", TimeZone(identifier: "UTC")!) == "2027-05-01T00:00:00.000Z")
        // Urumqi (+06:00): local midnight is 18:00 UTC the day before.
        #expect(expiry(.months(1), "2027-03-15T10:00:00+08:00", urumqi) == "2027-04-15T18:00:00.000Z")
    }

    @Test func endOfYearAfter() {
        // Earned 31 December 23:30 Beijing time (15:30 UTC the same day): end of that local year.
        #expect(expiry(.endOfYearAfter(0), "2027-12-31T23:30:00+08:00", shanghai) == "2027-12-31T16:00:00.000Z")
        // 1 January 00:10 Beijing time is the new year locally (still 31 Dec in UTC).
        #expect(expiry(.endOfYearAfter(0), "2028-01-01T00:10:00+08:00", shanghai) == "2028-12-31T16:00:00.000Z")
        #expect(expiry(.endOfYearAfter(2), "2027-06-01T12:00:00+08:00", shanghai) == "2029-12-31T16:00:00.000Z")
    }

    @Test func parserReadsValidatesAndDiffsTheKey() throws {
        let months = try parseOK(baseDocument + "\npoints_validity: { months: 24 }\n")
        #expect(months.pointsValidity == .months(24))
        let years = try parseOK(baseDocument + "\npoints_validity: { end_of_year_after: 1 }\n")
        #expect(years.pointsValidity == .endOfYearAfter(1))
        #expect(try parseOK(baseDocument).pointsValidity == nil)
        #expect(RuleSetDiff.diff(try parseOK(baseDocument), months).contains("points_validity: never expire → {months: 24}"))
        #expect(RuleSetDiff.diff(months, years) == ["points_validity: {months: 24} → {end_of_year_after: 1}"])
        for (bad, code) in [
            ("points_validity: { months: 0 }", ValidationIssue.Code.notPositive), ("points_validity: { months: 121 }", .outOfRange),
            ("points_validity: { end_of_year_after: 11 }", .outOfRange), ("points_validity: { months: 1, end_of_year_after: 1 }", .conflictingKeys),
            ("points_validity: {}", .missing), ("points_validity: { days: 7 }", .unknownKey), ("points_validity: 12", .wrongType),
            ("points_validity: { months: 1.5 }", .wrongType),
        ] {
            let found = issues(baseDocument + "\n" + bad + "\n")
            #expect(found.contains { $0.code == code && $0.path.hasPrefix("points_validity") }, "\(bad): \(found)")
        }
    }

    @Test func awardsCarryTheirLotsExpiryFromTheVersionThatJudgedThem() throws {
        let ruleSet = try parseOK(baseDocument + "\npoints_validity: { months: 1 }\n")
        let award = RuleEvaluator.evaluate(
            event: event("waste_sorting", "2027-01-31T23:59:00+08:00"), ruleSet: ruleSet, usage: CapUsage(),
            receivedAt: at("2027-02-01T09:00:00+08:00")
        ).award
        let expires = try #require(award?.lotExpiresAtMs)
        #expect(Timestamp.textUTC(milliseconds: expires) == "2027-02-28T16:00:00.000Z")
        let never = RuleEvaluator.evaluate(
            event: event("waste_sorting", "2027-01-31T23:59:00+08:00"), ruleSet: try parseOK(baseDocument), usage: CapUsage(),
            receivedAt: at("2027-02-01T09:00:00+08:00")
        ).award
        #expect(never != nil && never?.lotExpiresAtMs == nil)
    }

    @Test func drawsTakeOldestExpiryFirstAndRefundsGoBackLatestFirst() {
        let lots = [
            LotDraw.Lot(awardTransactionID: 7, expiresAtMs: 300, remaining: 5), LotDraw.Lot(awardTransactionID: 3, expiresAtMs: 100, remaining: 4),
            LotDraw.Lot(awardTransactionID: 9, expiresAtMs: 100, remaining: 2), LotDraw.Lot(awardTransactionID: 1, expiresAtMs: 200, remaining: 0),
        ]
        let drawn = LotDraw.draw(8, from: lots)
        #expect(drawn.map { $0.awardTransactionID } == [3, 9, 7] && drawn.map { $0.points } == [4, 2, 2])
        // More than the lots hold: the rest is non-expiring points, not recorded.
        #expect(LotDraw.draw(100, from: lots).map { $0.points } == [4, 2, 5])
        // A capture of 10 drew 4+2+2 from lots and 2 non-expiring: a refund of 5 gives back the
        // 2 non-expiring first, then 3 to the latest-drawn lots.
        let back = LotDraw.refund(5, refundable: 10, into: drawn)
        #expect(back.map { $0.awardTransactionID } == [7, 9] && back.map { $0.points } == [2, 1])
    }
}
