package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// An offer a partner redeems at a fixed points cost, as an operator defined it.
package struct Offer: Sendable, Equatable {
    package var province: String
    package var id: UUID
    /// The one partner that redeems it, or nil: every redeem partner of the province.
    package var partnerID: UUID?
    package var name: String
    package var pointsCost: Int64
    package var totalLimit: Int64?
    package var perCitizenLimit: PerCitizenLimit?
    package var validFrom: Date
    package var validTo: Date
    package var createdBy: String

    package struct PerCitizenLimit: Sendable, Equatable {
        package var count: Int
        /// `day`, `month` or `year` (calendar periods in China Standard Time), or `ever`.
        package var period: String

        package init(count: Int, period: String) {
            self.count = count
            self.period = period
        }
    }
}

package enum OfferError: Error, Sendable, Equatable, CustomStringConvertible, ServiceRefusal {
    case invalid(String)
    case unknownPartner(UUID)

    package var description: String {
        switch self {
        case .invalid(let text): return text
        case .unknownPartner(let id): return "no active redeem partner \(id.canonicalText) in this province"
        }
    }
}

/// Offers are append-only: a changed offer is a new offer (its limits count its own redemptions).
package final class OfferService: Sendable {
    let pool: PostgresPool

    package static let periods = ["day", "month", "year", "ever"]

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    package func create(
        province: String, partner: UUID?, name: String, pointsCost: Int64, totalLimit: Int64?, perCitizenLimit: Offer.PerCitizenLimit?,
        validFrom: Date, validTo: Date, createdBy: String
    ) async throws -> Offer {
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, RedemptionService.isBoundedText(name) else {
            throw OfferError.invalid("offer name must be 1–200 characters, none a control character")
        }
        guard (1...RedemptionService.maximumPoints).contains(pointsCost) else {
            throw OfferError.invalid("points cost must be in 1…\(RedemptionService.maximumPoints)")
        }
        if let totalLimit, !(1...1_000_000_000).contains(totalLimit) { throw OfferError.invalid("total limit must be in 1…1000000000") }
        if let limit = perCitizenLimit {
            guard (1...1_000_000).contains(limit.count) else { throw OfferError.invalid("per-citizen count must be in 1…1000000") }
            guard Self.periods.contains(limit.period) else {
                throw OfferError.invalid("per-citizen period must be one of \(Self.periods.joined(separator: ", "))")
            }
        }
        guard validTo > validFrom else { throw OfferError.invalid("valid_to must be after valid_from") }
        let offer = Offer(
            province: province, id: UUID(), partnerID: partner, name: name, pointsCost: pointsCost, totalLimit: totalLimit,
            perCitizenLimit: perCitizenLimit, validFrom: validFrom, validTo: validTo, createdBy: String(createdBy.prefix(200)))
        guard Province.isKnown(province) else { throw OfferError.invalid("unknown province \(province)") }
        try await pool.withConnection { connection in
            if let partner {
                let partnerOK = try connection.query(
                    """
                    SELECT 1 FROM partners WHERE province = \(province) AND partner_id = \(partner) AND revoked_at IS NULL AND 'redeem' = ANY(scopes)
                    """)
                guard !partnerOK.rows.isEmpty else { throw OfferError.unknownPartner(partner) }
            }
            try connection.query(
                """
                INSERT INTO offers (province, offer_id, partner_id, name, points_cost, total_limit, per_citizen_count, per_citizen_period,
                    valid_from, valid_to, created_by)
                VALUES (\(province), \(offer.id), \(partner), \(name), \(pointsCost), \(totalLimit), \(perCitizenLimit?.count),
                    \(perCitizenLimit?.period), \(validFrom), \(validTo), \(offer.createdBy))
                """)
        }
        return offer
    }

    package func list(province: String) async throws -> [Offer] {
        try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT offer_id, partner_id, name, points_cost, total_limit, per_citizen_count::bigint, per_citizen_period, valid_from, valid_to, created_by
                FROM offers WHERE province = \(province) ORDER BY created_at, offer_id
                """
            ).rows.map { row in
                let count = try row.decode(5, as: Int64?.self)
                let period = try row.decode(6, as: String?.self)
                return Offer(
                    province: province, id: try row.decode(0), partnerID: try row.decode(1, as: UUID?.self), name: try row.decode(2),
                    pointsCost: try row.decode(3),
                    totalLimit: try row.decode(4, as: Int64?.self),
                    perCitizenLimit: count.flatMap { c in period.map { Offer.PerCitizenLimit(count: Int(c), period: $0) } },
                    validFrom: try row.decode(7), validTo: try row.decode(8), createdBy: try row.decode(9))
            }
        }
    }

    /// The start of the calendar period containing `instant` in China Standard Time (every
    /// province of the programme; no daylight saving), or the distant past for `ever`.
    package static func periodStart(_ period: String, at instant: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Shanghai")!
        switch period {
        case "day": return calendar.dateInterval(of: .day, for: instant)!.start
        case "month": return calendar.dateInterval(of: .month, for: instant)!.start
        case "year": return calendar.dateInterval(of: .year, for: instant)!.start
        default: return Date(timeIntervalSince1970: 0)
        }
    }
}
