import Foundation
import TanhuiService
import Testing

@Suite("Pull cursors: opaque, authenticated, bound to their citizen")
struct PullCursorTests {
    let secret = Array("a cursor secret of thirty-two by".utf8)
    let citizen = UUID(uuidString: "7d3f0c1e-2b4a-4e5f-9a8b-0c1d2e3f4a5b")!

    @Test("a cursor decodes to the positions it was made from, for its own citizen only")
    func roundTrip() throws {
        let cursor = PullCursor(positions: ["CN-GD": 41, "CN-BJ": 0])
        let text = cursor.encode(citizen: citizen, secret: secret)
        #expect(text.hasPrefix("v2."))
        #expect(PullCursor.decode(text, citizen: citizen, secret: secret) == cursor)
        #expect(PullCursor.decode(text, citizen: UUID(), secret: secret) == nil)
        #expect(PullCursor.decode(text, citizen: citizen, secret: Array("another secret, also 32 bytes!!!".utf8)) == nil)
        // Same positions always give the same text (keys sorted), so clients can compare cursors.
        #expect(PullCursor(positions: ["CN-BJ": 0, "CN-GD": 41]).encode(citizen: citizen, secret: secret) == text)
    }

    @Test("a tampered, truncated, oversized or foreign-format cursor is unreadable, never misread")
    func tampering() throws {
        let text = PullCursor(positions: ["CN-GD": 41]).encode(citizen: citizen, secret: secret)
        let parts = text.split(separator: ".").map(String.init)
        // A payload claiming a later position, under the original MAC.
        let forged = "v2." + parts[1].replacingOccurrences(of: "NDE", with: "OTk") + "." + parts[2]
        #expect(forged != text)
        #expect(PullCursor.decode(forged, citizen: citizen, secret: secret) == nil)
        #expect(PullCursor.decode("v1.\(parts[1]).\(parts[2])", citizen: citizen, secret: secret) == nil)
        #expect(PullCursor.decode(String(text.dropLast()), citizen: citizen, secret: secret) == nil)
        #expect(PullCursor.decode(parts[1], citizen: citizen, secret: secret) == nil)
        #expect(PullCursor.decode(text + String(repeating: "A", count: 2048), citizen: citizen, secret: secret) == nil)
        #expect(PullCursor.decode("", citizen: citizen, secret: secret) == nil)
    }

    @Test("a correctly signed cursor naming an unknown province or a negative position is refused")
    func signedButInvalidPositions() {
        for positions in [["XX-ZZ": 1], ["CN-GD": -1]] as [[String: Int64]] {
            let text = PullCursor(positions: positions).encode(citizen: citizen, secret: secret)
            #expect(PullCursor.decode(text, citizen: citizen, secret: secret) == nil, "\(positions)")
        }
    }
}
