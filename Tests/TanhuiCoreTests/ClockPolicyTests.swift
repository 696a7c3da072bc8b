import Testing

@testable import TanhuiCore

@Suite("Clock policy: which device clocks are corrected")
struct ClockPolicyTests {
    let now: Int64 = 1_803_974_400_000  // 2027-03-01T00:00:00Z

    @Test("no sent_at, or a clock within ±120 s, is trusted as is")
    func trusted() {
        #expect(ClockPolicy.offsetMs(receivedAtMs: now, sentAtMs: nil) == 0)
        for skew: Int64 in [0, 1, -1, 120_000, -120_000] {
            #expect(ClockPolicy.offsetMs(receivedAtMs: now, sentAtMs: now - skew) == 0, "\(skew)")
        }
    }

    @Test("beyond ±120 s the whole offset is applied, in either direction; a 1970 reset is corrected")
    func corrected() {
        #expect(ClockPolicy.offsetMs(receivedAtMs: now, sentAtMs: now - 120_001) == 120_001)
        #expect(ClockPolicy.offsetMs(receivedAtMs: now, sentAtMs: now + 3_600_000) == -3_600_000)
        #expect(ClockPolicy.offsetMs(receivedAtMs: now, sentAtMs: 5_000) == now - 5_000)
    }

    @Test("the sane range is [2000-01-01, 2100-01-01) UTC, in milliseconds")
    func saneRange() {
        #expect(ClockPolicy.saneRangeMs.lowerBound == 946_684_800_000)
        #expect(ClockPolicy.saneRangeMs.upperBound == 4_102_444_800_000)
        #expect(ClockPolicy.saneRangeMs.contains(now))
        #expect(!ClockPolicy.saneRangeMs.contains(0))
    }
}
