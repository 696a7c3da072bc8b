import Foundation
import TanhuiCore
import TanhuiPostgres
import Testing

@Suite("Statements: every interpolated value is a parameter")
struct PostgresQueryTests {
    @Test("values become numbered parameters in order; nil binds NULL; SQL text never holds a value")
    func interpolation() {
        let province = "CN-GD'; DROP TABLE events; --"
        let limit = 50
        let missing: String? = nil
        let query: PostgresQuery = "SELECT * FROM rule_sets WHERE province = \(province) AND version > \(limit) AND note = \(missing)"
        #expect(query.sql == "SELECT * FROM rule_sets WHERE province = $1 AND version > $2 AND note = $3")
        #expect(query.parameters == [province, "50", nil])
        #expect(!query.sql.contains("DROP"))
    }

    @Test("identifiers are quoted with embedded quotes doubled; fragments are spliced verbatim")
    func identifiersAndFragments() {
        let columns: SQLFragment = "id, province"
        let query: PostgresQuery = "CREATE DATABASE \(identifier: #"odd"name"#); SELECT \(columns) FROM events WHERE id = \(7)"
        #expect(query.sql == #"CREATE DATABASE "odd""name"; SELECT id, province FROM events WHERE id = $1"#)
        #expect(query.parameters == ["7"])
    }

    @Test("explained() plans the same statement with the same parameters")
    func explained() {
        let query: PostgresQuery = "SELECT 1 WHERE \(true)"
        #expect(query.explained().sql == "EXPLAIN SELECT 1 WHERE $1")
        #expect(query.explained().parameters == query.parameters)
    }
}

@Suite("Array parameters in PostgreSQL's text form")
struct PostgresArrayTests {
    @Test("elements are quoted, quotes and backslashes escaped, nil is NULL")
    func textForm() {
        #expect(PostgresArray(["a", #"say "hi""#, #"back\slash"#]).postgresText == #"{"a","say \"hi\"","back\\slash"}"#)
        #expect(PostgresArray(["x", nil, ""] as [String?]).postgresText == #"{"x",NULL,""}"#)
        #expect(PostgresArray([String]()).postgresText == "{}")
        #expect(PostgresArray([1, -2, Int64.max]).postgresText == #"{"1","-2","9223372036854775807"}"#)
        // Multi-byte text passes through unchanged (the builder works on UTF-8 bytes).
        #expect(PostgresArray(["碳惠", "NULL"]).postgresText == #"{"碳惠","NULL"}"#)
    }

    @Test("ids and integers written in place equal their String forms, at the edges too")
    func inPlaceElements() {
        let integers: [Int64] = [0, 7, -1, 10, -10, 1_000_000, Int64.max, Int64.min, Int64.min + 1]
        #expect(PostgresArray(integers).postgresText == "{" + integers.map { "\"\($0)\"" }.joined(separator: ",") + "}")
        #expect(PostgresArray([Int32.min, 0, Int32.max]).postgresText == #"{"-2147483648","0","2147483647"}"#)
        #expect(PostgresArray([nil, 5] as [Int?]).postgresText == #"{NULL,"5"}"#)
        var ids = (0..<200).map { _ in UUID() }
        ids += [UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), UUID(uuidString: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")!]
        for id in ids {
            #expect(id.canonicalText == id.uuidString.lowercased())
            #expect(id.postgresText == id.uuidString.lowercased())
        }
        #expect(PostgresArray(ids).postgresText == "{" + ids.map { "\"\($0.uuidString.lowercased())\"" }.joined(separator: ",") + "}")
        #expect(PostgresArray([ids[0], nil] as [UUID?]).postgresText == "{\"\(ids[0].uuidString.lowercased())\",NULL}")
        // An escaped element after an unescaped one keeps both intact.
        #expect(PostgresArray(["plain", #"a"b\c"#, "tail"]).postgresText == #"{"plain","a\"b\\c","tail"}"#)
    }

    @Test("instants written in place are Timestamp.textUTC's text, at every boundary and outside 0–9999")
    func utcMilliseconds() {
        var instants: [Int64] = [0, -1, 1, 999, 1000, -1000, -1001, 86_399_999, 86_400_000, 951_782_400_000, 1_798_761_599_999, 4_102_444_800_000]
        // Years 0, 999, 1000, 9999, 10000 and negative ones, with their last millisecond.
        for year: Int64 in [-5, 0, 999, 1000, 1969, 1970, 2000, 2024, 9999, 10_000, 275_000] {
            let start = (year - 1970) * 31_556_952_000
            instants += [start, start - 1, start + 123]
        }
        var generator = SplitMix64(seed: 17)
        for _ in 0..<2000 { instants.append(Int64(bitPattern: generator.next()) % 400_000_000_000_000) }
        for ms in instants {
            #expect(UTCMilliseconds(ms).postgresText == Timestamp.textUTC(milliseconds: ms), "\(ms)")
        }
        #expect(PostgresArray([UTCMilliseconds(0), nil] as [UTCMilliseconds?]).postgresText == #"{"1970-01-01T00:00:00.000Z",NULL}"#)
    }
}
