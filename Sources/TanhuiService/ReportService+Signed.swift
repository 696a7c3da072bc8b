package import Foundation

/// Why a report could not be produced (HTTP maps these to 400 / 503, the CLI to exit 2).
package enum ReportFailure: Error, Sendable, CustomStringConvertible, Equatable {
    case badRequest(String)
    case noKey
    case tooLarge(Int)

    package var description: String {
        switch self {
        case .badRequest(let detail): return detail
        case .noKey: return "reports are signed with the checkpoint key, and TANHUI_CHECKPOINT_KEY is not set"
        case .tooLarge(let cells): return "the grouping gives more than \(cells) cells; group by fewer dimensions or a shorter period"
        }
    }
}

extension ReportService {
    /// Parses what a client asked for (query parameters or CLI options).
    package static func request(province: String, from: String?, to: String?, groupBy: String?) throws(ReportFailure) -> ReportRequest {
        guard let from, let to else { throw .badRequest("from and to are required (local dates YYYY-MM-DD, inclusive)") }
        var dimensions: [ReportDimension] = []
        if let groupBy, !groupBy.isEmpty {
            switch ReportDimension.parseList(groupBy) {
            case .success(let parsed): dimensions = parsed
            case .failure(let unknown): throw .badRequest(unknown.message)
            }
        }
        let request = ReportRequest(province: province, from: from, to: to, groupBy: dimensions)
        if let problem = request.problem() { throw .badRequest(problem) }
        return request
    }

    /// The one pipeline behind `GET …/reports` and `tanhui report`: parse, fold the chain as
    /// far as it is sealed (`waitForAdvance: false` skips the fold when another process is
    /// folding this province), read one snapshot, sign with the checkpoint key.
    package func signedReport(
        province: String, from: String?, to: String?, groupBy: String?, checkpointKey: [UInt8]?, waitForAdvance: Bool, at time: Date = Date()
    ) async throws -> SignedReport {
        let request = try Self.request(province: province, from: from, to: to, groupBy: groupBy)
        guard checkpointKey != nil else { throw ReportFailure.noKey }
        try await advance(province: province, wait: waitForAdvance)
        let report: Report
        do {
            report = try await self.report(request)
        } catch let error as ReportTooLarge {
            throw ReportFailure.tooLarge(error.cells)
        }
        guard let signed = try SignedReport.sign(report, checkpointKey: checkpointKey, at: time) else { throw ReportFailure.noKey }
        return signed
    }
}

extension SignedReport {
    /// The JSON form: the request, the chain head, the threshold, cells and total (figures
    /// `null` when suppressed), the CSV form's SHA-256 and the signed note.
    package var jsonObject: [String: Any] {
        func number(_ value: Int64?) -> Any { value.map { NSNumber(value: $0) } ?? NSNull() }
        func cell(_ cell: ReportCell) -> [String: Any] {
            var object: [String: Any] = [
                "suppressed": cell.suppressed, "accepted": number(cell.accepted), "rejected": number(cell.rejected),
                "grams_co2e": number(cell.gramsCO2e), "points": number(cell.points), "reversals": number(cell.reversals),
                "citizens": number(cell.citizens),
                "rejected_by_code": cell.rejectedByCode.map { codes in codes.mapValues { NSNumber(value: $0) } as Any } ?? NSNull(),
            ]
            for dimension in report.request.groupBy { object[dimension.rawValue] = (cell.keys[dimension] ?? nil) ?? NSNull() }
            return object
        }
        return [
            "province": report.request.province, "from": report.request.from, "to": report.request.to,
            "group_by": report.request.groupBy.map(\.rawValue), "time_zone": "+08:00",
            "suppression_threshold": NSNumber(value: report.threshold),
            "chain_head": [
                "chain_seq": NSNumber(value: report.head.chainSeq), "hash": report.head.hash, "seal_id": NSNumber(value: report.head.sealID),
            ],
            "cells": report.cells.map(cell), "total": cell(report.total),
            "csv_sha256": csvSHA256,
            "note": note,
        ]
    }

    package var json: Data {
        (try? JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    }
}
