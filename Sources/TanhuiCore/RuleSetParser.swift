package import Foundation
import Yams

/// Parses and validates a rule-set document (YAML, or JSON, which the same YAML reader accepts).
///
/// Numbers are read from each scalar's source text into `ExactDecimal`, never through a float.
/// JSON goes through the same node tree, so both formats get the same checks and line/column.
/// Every problem is collected and reported at once.
package enum RuleSetParser {
    /// Documents above this size are refused before parsing.
    package static let maxDocumentBytes = 256 * 1024
    /// Deeper nesting than the format needs is refused before validation.
    package static let maxDepth = 12
    package static let maxActivities = 64
    package static let maxCaps = 64
    package static let maxCampaigns = 256
    /// Modes, materials, or kinds listed by one campaign.
    package static let maxVariants = 64

    /// Factor ceilings in grams CO2e; above them a factor needs `acknowledge_high_factor: true`.
    /// Chosen well above any published figure (car ≈ 270 g/pkm, aluminium ≈ 15 000 g/kg, the
    /// dirtiest grid ≈ 725 g/kWh) so only typos and unit slips (kg for g) trip them.
    package static let factorCeilings: [String: ExactDecimal] = [
        "grams_per_km": ExactDecimal(1000),
        "grams_per_trip": ExactDecimal(5000),
        "grams_per_event": ExactDecimal(5000),
        "grams_per_kg": ExactDecimal(20000),
        "grams_per_unit": ExactDecimal(1000),
        "grams_per_kwh": ExactDecimal(2000),
    ]

    package static func parse(_ data: Data) throws(RuleSetInvalid) -> RuleSet {
        guard data.count <= maxDocumentBytes else { throw tooLarge(data.count) }
        var bytes = data
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw RuleSetInvalid(issues: [ValidationIssue(path: "", code: .notUTF8, message: "the document is not valid UTF-8")])
        }
        return try parse(text)
    }

    package static func parse(_ text: String) throws(RuleSetInvalid) -> RuleSet {
        let size = text.utf8.count
        guard size <= maxDocumentBytes else { throw tooLarge(size) }
        let root: Node
        let parser: Parser
        do {
            parser = try Parser(yaml: text)
            guard let node = try parser.singleRoot() else {
                throw RuleSetInvalid(issues: [ValidationIssue(path: "", line: 1, column: 1, code: .missing, message: "the document is empty")])
            }
            root = node
        } catch let error as RuleSetInvalid {
            throw error
        } catch let error as YamlError {
            throw RuleSetInvalid(issues: [issue(from: error)])
        } catch {
            throw RuleSetInvalid(issues: [ValidationIssue(path: "", code: .syntax, message: "\(error)")])
        }
        // Anchors are only visible while the parser that registered them is alive (Yams keeps them weakly).
        let structural = withExtendedLifetime(parser) { structuralIssue(root) }
        if let structural { throw RuleSetInvalid(issues: [structural]) }
        var reader = DocumentReader()
        let ruleSet = reader.readRuleSet(root)
        if let ruleSet, reader.issues.isEmpty { return ruleSet }
        throw RuleSetInvalid(issues: reader.issues)
    }

    private static func tooLarge(_ size: Int) -> RuleSetInvalid {
        RuleSetInvalid(issues: [
            ValidationIssue(path: "", code: .documentTooLarge, message: "the document is \(size) bytes; the limit is \(maxDocumentBytes)")
        ])
    }

    /// Refuses anchors/aliases and excess depth before any value is read, walking iteratively
    /// and stopping at the first hit, so an alias bomb is never expanded.
    private static func structuralIssue(_ root: Node) -> ValidationIssue? {
        var stack: [(Node, Int)] = [(root, 0)]
        while let (node, depth) = stack.popLast() {
            if case .alias = node { return aliasIssue(node) }
            if node.anchor != nil { return aliasIssue(node) }
            if depth > maxDepth {
                return ValidationIssue(
                    path: "", line: node.mark?.line, column: node.mark?.column, code: .tooDeep,
                    message: "nesting deeper than \(maxDepth) levels")
            }
            switch node {
            case .mapping(let m):
                for (k, v) in m.reversed() {
                    stack.append((v, depth + 1))
                    stack.append((k, depth + 1))
                }
            case .sequence(let s):
                for v in s.reversed() { stack.append((v, depth + 1)) }
            case .scalar, .alias:
                break
            }
        }
        return nil
    }

    private static func aliasIssue(_ node: Node) -> ValidationIssue {
        ValidationIssue(
            path: "", line: node.mark?.line, column: node.mark?.column, code: .aliasNotAllowed,
            message: "YAML anchors (&name) and aliases (*name) are not allowed; write each value out")
    }

    private static func issue(from error: YamlError) -> ValidationIssue {
        func describe(_ context: YamlError.Context?, _ problem: String) -> String {
            guard let context else { return problem }
            return "\(context.text) (line \(context.mark.line)): \(problem)"
        }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            if problem.hasPrefix("Maximum nesting level") {
                return ValidationIssue(path: "", line: mark.line, column: mark.column, code: .tooDeep, message: "nesting too deep")
            }
            return ValidationIssue(path: "", line: mark.line, column: mark.column, code: .syntax, message: describe(context, problem))
        case let .reader(problem, offset, _, _):
            return ValidationIssue(path: "", code: .syntax, message: problem + (offset.map { " at byte \($0)" } ?? ""))
        case let .duplicatedKeysInMapping(duplicates, context):
            return ValidationIssue(
                path: "", line: context.mark.line, column: context.mark.column, code: .syntax,
                message: "duplicate key(s) in one mapping: " + duplicates.map { "'\($0)'" }.joined(separator: ", "))
        default:
            return ValidationIssue(path: "", code: .syntax, message: "\(error)")
        }
    }
}

// MARK: - Reading

/// A mapping whose keys were checked against the allowed set.
private struct Fields {
    let node: Node
    let path: String
    let values: [String: Node]

    subscript(key: String) -> Node? { values[key] }
    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

private let identifierPattern = "lower-case letters, digits and _ (starting with a letter, at most 64)"

private func isIdentifier(_ s: String) -> Bool {
    let b = Array(s.utf8)
    guard let first = b.first, (97...122).contains(first), b.count <= 64 else { return false }
    return b.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 }
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}

private struct DocumentReader {
    var issues: [ValidationIssue] = []

    mutating func add(_ path: String, _ node: Node?, _ code: ValidationIssue.Code, _ message: String) {
        issues.append(ValidationIssue(path: path, line: node?.mark?.line, column: node?.mark?.column, code: code, message: message))
    }

    private func typeName(_ node: Node) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        case .scalar(let s):
            if s.style != .plain { "a quoted string" } else if isNull(node) { "nothing (null)" } else { "'\(s.string)'" }
        }
    }

    private func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// Plain (unquoted, untagged) scalar text: the only form numbers and booleans may take.
    private func plainText(_ node: Node) -> String? {
        guard case .scalar(let s) = node, s.style == .plain, s.tag.rawValue.isEmpty, !isNull(node) else { return nil }
        return s.string
    }

    mutating func fields(_ node: Node, _ path: String, allowed: [String], what: String) -> Fields? {
        guard case .mapping(let mapping) = node else {
            add(path, node, .wrongType, "expected \(what) (a mapping), found \(typeName(node))")
            return nil
        }
        var values: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let k) = keyNode else {
                add(path, keyNode, .wrongType, "mapping keys must be plain strings")
                continue
            }
            let key = k.string
            if allowed.contains(key) {
                values[key] = value
            } else {
                let close = allowed.filter { editDistance($0, key) <= 2 }.first
                let hint = close.map { "; did you mean '\($0)'?" } ?? "; allowed: " + allowed.joined(separator: ", ")
                add(path.isEmpty ? key : "\(path).\(key)", keyNode, .unknownKey, "unknown key '\(key)' in \(what)\(hint)")
            }
        }
        return Fields(node: node, path: path, values: values)
    }

    /// Checks a mapping that is one of the allowed-key maps but where any key is a name (modes, materials).
    mutating func namedEntries(_ node: Node, _ path: String, what: String) -> [(String, Node, Node)]? {
        guard case .mapping(let mapping) = node else {
            add(path, node, .wrongType, "expected \(what) (a mapping of name to factor), found \(typeName(node))")
            return nil
        }
        guard mapping.count > 0 else {
            add(path, node, .empty, "\(what) must name at least one entry")
            return nil
        }
        guard mapping.count <= RuleSetParser.maxVariants else {
            add(path, node, .tooMany, "at most \(RuleSetParser.maxVariants) entries")
            return nil
        }
        var out: [(String, Node, Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let k) = keyNode else {
                add(path, keyNode, .wrongType, "names must be plain strings")
                continue
            }
            guard isIdentifier(k.string) else {
                add("\(path).\(k.string)", keyNode, .badIdentifier, "'\(k.string)' is not a valid name: use \(identifierPattern)")
                continue
            }
            out.append((k.string, keyNode, value))
        }
        return out
    }

    mutating func missing(_ f: Fields, _ key: String, _ message: String? = nil) {
        add(f.path(key), f.node, .missing, message ?? "'\(key)' is required")
    }

    mutating func string(_ f: Fields, _ key: String, required: Bool, maxLength: Int = 200) -> String? {
        guard let node = f[key] else {
            if required { missing(f, key) }
            return nil
        }
        guard case .scalar(let s) = node, !isNull(node) else {
            add(f.path(key), node, .wrongType, "expected a string, found \(typeName(node))")
            return nil
        }
        let value = s.string.trimmingCharacters(in: .whitespacesAndNewlines)
        if value.isEmpty {
            add(f.path(key), node, .empty, "'\(key)' must not be empty")
            return nil
        }
        if value.count > maxLength {
            add(f.path(key), node, .tooMany, "'\(key)' is longer than \(maxLength) characters")
            return nil
        }
        return value
    }

    mutating func identifier(_ f: Fields, _ key: String, required: Bool) -> String? {
        guard let s = string(f, key, required: required, maxLength: 64) else { return nil }
        guard isIdentifier(s) else {
            add(f.path(key), f[key], .badIdentifier, "'\(s)' is not a valid name: use \(identifierPattern)")
            return nil
        }
        return s
    }

    mutating func bool(_ f: Fields, _ key: String) -> Bool? {
        guard let node = f[key] else { return nil }
        switch plainText(node) {
        case "true": return true
        case "false": return false
        default:
            add(f.path(key), node, .wrongType, "expected true or false, found \(typeName(node))")
            return nil
        }
    }

    /// An integer from its source text; `range` violations use `outOfRangeCode`.
    mutating func integer(
        _ f: Fields, _ key: String, required: Bool, range: ClosedRange<Int64>, code: ValidationIssue.Code = .outOfRange
    ) -> Int64? {
        guard let node = f[key] else {
            if required { missing(f, key) }
            return nil
        }
        guard let text = plainText(node) else {
            add(f.path(key), node, .wrongType, "expected an integer, found \(typeName(node))")
            return nil
        }
        let negative = text.hasPrefix("-")
        let digits = negative ? String(text.dropFirst()) : text
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }), digits == "0" || !digits.hasPrefix("0")
        else {
            add(f.path(key), node, .wrongType, "expected an integer, found '\(text)'")
            return nil
        }
        guard let magnitude = Int64(digits) else {
            add(f.path(key), node, code, "\(text) is out of range \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        let value = negative ? -magnitude : magnitude
        guard range.contains(value) else {
            let c: ValidationIssue.Code = value <= 0 && range.lowerBound >= 1 ? .notPositive : code
            add(f.path(key), node, c, "\(value) is outside \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        return value
    }

    /// An exact positive decimal from its source text.
    mutating func decimal(
        _ f: Fields, _ key: String, required: Bool, ceiling: ExactDecimal? = nil, ceilingCode: ValidationIssue.Code = .absurdValue,
        acknowledged: Bool = false, minimum: ExactDecimal? = nil
    ) -> ExactDecimal? {
        guard let node = f[key] else {
            if required { missing(f, key) }
            return nil
        }
        return decimalValue(node, f.path(key), name: key, ceiling: ceiling, ceilingCode: ceilingCode, acknowledged: acknowledged, minimum: minimum)
    }

    mutating func decimalValue(
        _ node: Node, _ path: String, name: String, ceiling: ExactDecimal?, ceilingCode: ValidationIssue.Code,
        acknowledged: Bool, minimum: ExactDecimal? = nil
    ) -> ExactDecimal? {
        guard let text = plainText(node) else {
            add(path, node, .wrongType, "expected a number, found \(typeName(node))")
            return nil
        }
        let value: ExactDecimal
        do {
            value = try ExactDecimal(parsing: text)
        } catch .negative {
            add(path, node, .notPositive, "\(name) must be positive, found \(text)")
            return nil
        } catch {
            add(path, node, .badDecimal, "'\(text)': \(error)")
            return nil
        }
        if value.isZero {
            add(path, node, .notPositive, "\(name) must be positive, found \(text)")
            return nil
        }
        if let minimum, value < minimum {
            add(path, node, .outOfRange, "\(name) must be at least \(minimum), found \(value)")
            return nil
        }
        if let ceiling, value > ceiling, !acknowledged {
            let hint = ceilingCode == .factorTooHigh ? "; if this is right, add acknowledge_high_factor: true to the activity" : ""
            add(path, node, ceilingCode, "\(name) \(value) is above the ceiling \(ceiling)\(hint)")
            return nil
        }
        return value
    }

    mutating func timestamp(_ f: Fields, _ key: String, required: Bool) -> Int64? {
        guard let node = f[key] else {
            if required { missing(f, key) }
            return nil
        }
        guard case .scalar(let s) = node, !isNull(node) else {
            add(f.path(key), node, .wrongType, "expected a timestamp, found \(typeName(node))")
            return nil
        }
        switch Instant.parseRFC3339(s.string) {
        case .success(let ms): return ms
        case .failure(let e):
            add(f.path(key), node, .badTimestamp, "'\(s.string)': \(e.message)")
            return nil
        }
    }

    mutating func list(_ f: Fields, _ key: String, required: Bool, max: Int) -> [Node]? {
        guard let node = f[key] else {
            if required { missing(f, key) }
            return nil
        }
        guard case .sequence(let seq) = node else {
            add(f.path(key), node, .wrongType, "expected a list, found \(typeName(node))")
            return nil
        }
        guard seq.count <= max else {
            add(f.path(key), node, .tooMany, "at most \(max) entries, found \(seq.count)")
            return nil
        }
        return Array(seq)
    }

    // MARK: Document

    static let rootKeys = [
        "province", "version", "effective_from", "valid_until", "timezone", "grams_per_point", "submission_window_days", "methodology",
        "activities", "caps", "campaigns", "points_validity",
    ]

    mutating func readRuleSet(_ root: Node) -> RuleSet? {
        guard let f = fields(root, "", allowed: Self.rootKeys, what: "a rule set") else { return nil }

        var province: String?
        if let p = string(f, "province", required: true, maxLength: 10) {
            if Province.isKnown(p) {
                province = p
            } else {
                let hint = Province.suggestion(for: p).map { "; did you mean \($0)?" } ?? "; use an ISO 3166-2:CN code such as CN-GD"
                add("province", f["province"], .unknownProvince, "unknown province '\(p)'\(hint)")
            }
        }
        let version = integer(f, "version", required: true, range: 1...Int64(Int32.max))
        let effectiveFrom = timestamp(f, "effective_from", required: true)
        let validUntil = timestamp(f, "valid_until", required: false)
        if let effectiveFrom, let validUntil, validUntil <= effectiveFrom {
            add("valid_until", f["valid_until"], .inconsistentRange, "valid_until must be after effective_from")
        }
        var timeZone: TimeZone?
        if let tz = string(f, "timezone", required: true, maxLength: 64) {
            if Self.ianaZones.contains(tz), let zone = TimeZone(identifier: tz) {
                timeZone = zone
            } else {
                add("timezone", f["timezone"], .unknownTimezone, "'\(tz)' is not an IANA time zone such as Asia/Shanghai")
            }
        }
        let gramsPerPoint = integer(f, "grams_per_point", required: true, range: 1...1_000_000)
        let window = integer(f, "submission_window_days", required: true, range: 1...3650)
        let methodology = string(f, "methodology", required: true, maxLength: 2000)
        let validity = readPointsValidity(f)

        var activities: [Activity] = []
        var kindsSeen: [String: Int] = [:]
        // Unknown-kind reports on caps and campaigns are only trustworthy if every kind was readable.
        var kindsComplete = false
        if let items = list(f, "activities", required: true, max: RuleSetParser.maxActivities) {
            if items.isEmpty { add("activities", f["activities"], .empty, "a rule set must cover at least one kind") }
            kindsComplete = true
            for (i, item) in items.enumerated() {
                let path = "activities[\(i)]"
                let (kind, activity) = readActivity(item, path)
                if kind == nil { kindsComplete = false }
                if let kind {
                    if let first = kindsSeen[kind] {
                        add(
                            "\(path).kind", (item.mapping?["kind"]) ?? item, .duplicateKind,
                            "kind '\(kind)' is already defined by activities[\(first)]")
                    } else {
                        kindsSeen[kind] = i
                    }
                }
                if let activity { activities.append(activity) }
            }
        }

        var caps: [Cap] = []
        var capKeys: [String: Int] = [:]
        for (i, item) in (list(f, "caps", required: false, max: RuleSetParser.maxCaps) ?? []).enumerated() {
            let path = "caps[\(i)]"
            guard let cf = fields(item, path, allowed: ["kind", "period", "max_points", "max_events"], what: "a cap") else { continue }
            let kind = identifier(cf, "kind", required: false)
            if let kind, kindsSeen[kind] == nil, kindsComplete {
                add(cf.path("kind"), cf["kind"], .capUnknownKind, "no activity has kind '\(kind)'")
            }
            var period: CapPeriod?
            if let p = string(cf, "period", required: true, maxLength: 16) {
                period = CapPeriod(rawValue: p)
                if period == nil { add(cf.path("period"), cf["period"], .wrongType, "period must be day, week or month, found '\(p)'") }
            }
            let maxPoints = integer(cf, "max_points", required: false, range: 1...1_000_000_000)
            let maxEvents = integer(cf, "max_events", required: false, range: 1...1_000_000)
            if cf["max_points"] == nil && cf["max_events"] == nil {
                missing(cf, "max_points", "a cap needs max_points, max_events, or both")
            }
            if let period {
                let key = "\(kind ?? "*")/\(period.rawValue)"
                if let first = capKeys[key] {
                    add(
                        path, item, .duplicateCap,
                        "caps[\(first)] already limits \(kind ?? "all kinds") per \(period.rawValue); put max_points and max_events in one cap")
                } else {
                    capKeys[key] = i
                }
                if cf["kind"] == nil || kind != nil, maxPoints != nil || maxEvents != nil {
                    caps.append(Cap(kind: kind, period: period, maxPoints: maxPoints, maxEvents: maxEvents))
                }
            }
        }

        var campaigns: [Campaign] = []
        var campaignPaths: [Int] = []
        var campaignNodes: [Node] = []
        var campaignNames: [String: Int] = [:]
        for (i, item) in (list(f, "campaigns", required: false, max: RuleSetParser.maxCampaigns) ?? []).enumerated() {
            let path = "campaigns[\(i)]"
            guard let cf = fields(item, path, allowed: ["name", "kinds", "from", "to", "multiplier"], what: "a campaign") else { continue }
            let name = string(cf, "name", required: true)
            if let name {
                if let first = campaignNames[name] {
                    add(cf.path("name"), cf["name"], .duplicateCampaign, "campaigns[\(first)] already uses the name '\(name)'")
                } else {
                    campaignNames[name] = i
                }
            }
            var kinds: [String] = []
            var kindsOK = true
            if let items = list(cf, "kinds", required: true, max: RuleSetParser.maxVariants) {
                if items.isEmpty {
                    add(cf.path("kinds"), cf["kinds"], .empty, "a campaign must name at least one kind")
                    kindsOK = false
                }
                for (j, k) in items.enumerated() {
                    let kp = "\(path).kinds[\(j)]"
                    guard case .scalar(let s) = k, !isNull(k), isIdentifier(s.string) else {
                        add(kp, k, .badIdentifier, "expected a kind name (\(identifierPattern))")
                        kindsOK = false
                        continue
                    }
                    if kindsSeen[s.string] == nil {
                        if kindsComplete { add(kp, k, .campaignUnknownKind, "no activity has kind '\(s.string)'") }
                        kindsOK = false
                    } else if !kinds.contains(s.string) {
                        kinds.append(s.string)
                    }
                }
            } else {
                kindsOK = false
            }
            let from = timestamp(cf, "from", required: true)
            let to = timestamp(cf, "to", required: true)
            if let from, let to, to <= from {
                add(cf.path("to"), cf["to"], .inconsistentRange, "'to' must be after 'from' (the window is from ≤ t < to)")
            }
            let multiplier = decimal(cf, "multiplier", required: true, ceiling: ExactDecimal(10), minimum: ExactDecimal(1))
            if let name, kindsOK, let from, let to, to > from, let multiplier {
                campaigns.append(Campaign(name: name, kinds: kinds, fromMs: from, toMs: to, multiplier: multiplier))
                campaignPaths.append(i)
                campaignNodes.append(cf["from"] ?? item)
            }
        }
        // Overlap per kind: at most one campaign may apply to any event, so its multiplier is unambiguous.
        for a in campaigns.indices {
            for b in campaigns.indices where b > a {
                let shared = campaigns[a].kinds.filter { campaigns[b].kinds.contains($0) }
                guard !shared.isEmpty, campaigns[a].fromMs < campaigns[b].toMs, campaigns[b].fromMs < campaigns[a].toMs else { continue }
                add(
                    "campaigns[\(campaignPaths[b])]", campaignNodes[b], .overlappingCampaigns,
                    "overlaps campaigns[\(campaignPaths[a])] ('\(campaigns[a].name)') for \(shared.joined(separator: ", "))")
            }
        }

        guard let province, let version, let effectiveFrom, let timeZone, let gramsPerPoint, let window, let methodology, validity.valid,
            issues.isEmpty
        else { return nil }
        func position(_ key: String) -> SourcePosition? {
            f[key]?.mark.map { SourcePosition(line: $0.line, column: $0.column) }
        }
        return RuleSet(
            province: province, version: Int(version), effectiveFromMs: effectiveFrom, timeZone: timeZone,
            gramsPerPoint: gramsPerPoint, submissionWindowDays: Int(window), methodology: methodology,
            activities: activities, caps: caps, campaigns: campaigns, pointsValidity: validity.rule,
            versionPosition: position("version"), effectiveFromPosition: position("effective_from"), validUntilMs: validUntil)
    }

    /// `points_validity`: absent (points never expire), or exactly one of `{months: 1…120}`
    /// and `{end_of_year_after: 0…10}`.
    mutating func readPointsValidity(_ root: Fields) -> (valid: Bool, rule: PointsValidity?) {
        guard root["points_validity"] != nil else { return (true, nil) }
        let keys = ["months", "end_of_year_after"]
        let before = issues.count
        guard let f = fields(root["points_validity"]!, "points_validity", allowed: keys, what: "points_validity") else { return (false, nil) }
        let months = integer(f, "months", required: false, range: 1...Int64(PointsValidity.maximumMonths))
        let years = integer(f, "end_of_year_after", required: false, range: 0...Int64(PointsValidity.maximumYears))
        let given = keys.filter { f[$0] != nil }
        if given.count != 1 {
            add(
                "points_validity", f.node, given.isEmpty ? .missing : .conflictingKeys,
                "points_validity needs exactly one of months (1…\(PointsValidity.maximumMonths)) and end_of_year_after (0…\(PointsValidity.maximumYears))"
            )
        }
        guard issues.count == before else { return (false, nil) }
        if let months { return (true, .months(Int(months))) }
        if let years { return (true, .endOfYearAfter(Int(years))) }
        return (false, nil)
    }

    static let ianaZones: Set<String> = {
        var zones = Set(TimeZone.knownTimeZoneIdentifiers)
        zones.insert("UTC")
        return zones
    }()

    // MARK: Activities

    static let commonActivityKeys = ["kind", "method", "acknowledge_high_factor", "source", "sources", "self_reported"]
    static let tripLimitKeys = ["min_distance_km", "max_distance_km", "min_duration_s", "max_speed_kmh"]
    static let methodKeys: [String: [String]] = [
        "per_distance": ["grams_per_km", "modes"] + tripLimitKeys,
        "per_trip": ["grams_per_trip", "modes"] + tripLimitKeys,
        "per_event": ["grams_per_event"],
        "per_weight": ["materials", "min_weight_kg", "max_weight_kg"],
        "per_count": ["grams_per_unit", "unit", "min_units", "max_units"],
        "baseline_delta": ["grid_factor", "baseline", "max_days"],
    ]

    mutating func readActivity(_ node: Node, _ path: String) -> (String?, Activity?) {
        // First pass only to learn the method, so unknown keys can be judged against it.
        var method: String?
        if case .mapping(let m) = node, let mnode = m["method"], case .scalar(let s) = mnode {
            method = s.string
        }
        let allowed = Self.commonActivityKeys + (method.flatMap { Self.methodKeys[$0] } ?? Self.methodKeys.values.flatMap { $0 })
        guard let f = fields(node, path, allowed: Array(Set(allowed)).sorted(), what: "an activity") else { return (nil, nil) }
        let kind = identifier(f, "kind", required: true)
        let ack = bool(f, "acknowledge_high_factor") ?? false
        let source = string(f, "source", required: false, maxLength: 500)
        var sources = ActivitySources.any
        if let text = string(f, "sources", required: false, maxLength: 32) {
            if let value = ActivitySources(rawValue: text) {
                sources = value
            } else {
                add(f.path("sources"), f["sources"], .unknownSources, "sources must be one of: any, partner_only")
            }
        }
        guard let methodName = string(f, "method", required: true, maxLength: 32) else { return (kind, nil) }
        guard Self.methodKeys[methodName] != nil else {
            add(
                f.path("method"), f["method"], .unknownMethod,
                "unknown method '\(methodName)'; use one of " + Self.methodKeys.keys.sorted().joined(separator: ", "))
            return (kind, nil)
        }
        let before = issues.count
        let m: Activity.Method?
        switch methodName {
        case "per_distance":
            let table = factorTable(f, flatKey: "grams_per_km", variantsKey: "modes", ack: ack)
            let limits = tripLimits(f)
            m = table.map { .perDistance(PerDistance(gramsPerKm: $0, limits: limits)) }
        case "per_trip":
            let table = factorTable(f, flatKey: "grams_per_trip", variantsKey: "modes", ack: ack)
            let limits = tripLimits(f)
            m = table.map { .perTrip(PerTrip(gramsPerTrip: $0, limits: limits)) }
        case "per_event":
            m = factor(f, "grams_per_event", ack: ack).map { .perEvent(gramsPerEvent: $0) }
        case "per_weight":
            var materials: [String: ExactDecimal] = [:]
            if let node = f["materials"] {
                for (name, _, value) in namedEntries(node, f.path("materials"), what: "materials") ?? [] {
                    let mp = "\(f.path("materials")).\(name)"
                    if let mf = fields(value, mp, allowed: ["grams_per_kg"], what: "a material"), let d = factor(mf, "grams_per_kg", ack: ack) {
                        materials[name] = d
                    }
                }
            } else {
                missing(f, "materials")
            }
            let minKg = decimal(f, "min_weight_kg", required: false, ceiling: ExactDecimal(100_000))
            let maxKg = decimal(f, "max_weight_kg", required: false, ceiling: ExactDecimal(100_000))
            if let minKg, let maxKg, minKg > maxKg {
                add(f.path("min_weight_kg"), f["min_weight_kg"], .inconsistentRange, "min_weight_kg \(minKg) is above max_weight_kg \(maxKg)")
            }
            m = .perWeight(PerWeight(gramsPerKg: materials, minWeightKg: minKg, maxWeightKg: maxKg))
        case "per_count":
            let perUnit = factor(f, "grams_per_unit", ack: ack)
            let unit = identifier(f, "unit", required: true)
            let minUnits = integer(f, "min_units", required: false, range: 1...1_000_000_000, code: .absurdValue)
            let maxUnits = integer(f, "max_units", required: false, range: 1...1_000_000_000, code: .absurdValue)
            if let minUnits, let maxUnits, minUnits > maxUnits {
                add(f.path("min_units"), f["min_units"], .inconsistentRange, "min_units \(minUnits) is above max_units \(maxUnits)")
            }
            m = perUnit.flatMap { p in unit.map { .perCount(PerCount(gramsPerUnit: p, unit: $0, minUnits: minUnits, maxUnits: maxUnits)) } }
        case "baseline_delta":
            var gramsPerKwh: ExactDecimal?
            var series: String?
            if let g = f["grid_factor"] {
                if let gf = fields(g, f.path("grid_factor"), allowed: ["grams_per_kwh", "series"], what: "a grid factor") {
                    gramsPerKwh = factor(gf, "grams_per_kwh", ack: ack)
                    series = string(gf, "series", required: true)
                }
            } else {
                missing(f, "grid_factor")
            }
            var baseline: BaselineDelta.Baseline?
            if let b = f["baseline"] {
                if let bf = fields(b, f.path("baseline"), allowed: ["type", "wh_per_day"], what: "a baseline"),
                    let type = string(bf, "type", required: true, maxLength: 32)
                {
                    switch type {
                    case "fixed":
                        if let wh = integer(bf, "wh_per_day", required: true, range: 1...1_000_000, code: .absurdValue) {
                            baseline = .fixed(whPerDay: wh)
                        }
                    case "own_history":
                        if bf["wh_per_day"] != nil {
                            add(bf.path("wh_per_day"), bf["wh_per_day"], .conflictingKeys, "wh_per_day only applies to type: fixed")
                        }
                        baseline = .ownHistory
                    default:
                        add(bf.path("type"), bf["type"], .wrongType, "baseline type must be fixed or own_history, found '\(type)'")
                    }
                }
            } else {
                missing(f, "baseline")
            }
            let maxDays = integer(f, "max_days", required: false, range: 1...366, code: .absurdValue)
            if let gramsPerKwh, let series, let baseline {
                m = .baselineDelta(BaselineDelta(gramsPerKwh: gramsPerKwh, gridSeries: series, baseline: baseline, maxDays: maxDays))
            } else {
                m = nil
            }
        default:
            m = nil
        }
        let selfReported = selfReportedTerms(f, sources: sources, method: m)
        guard let kind, let m, issues.count == before else { return (kind, nil) }
        return (kind, Activity(kind: kind, method: m, acknowledgeHighFactor: ack, source: source, sources: sources, selfReported: selfReported))
    }

    /// `self_reported: {factor_multiplier: M}`: 0 < M ≤ 1, exact, meaningless beside
    /// `sources: partner_only` (no self-reported event is credited there), and every product
    /// with one of the activity's factors must be exact (≤ 9 fraction digits), so a
    /// self-reported award still has a single floor.
    mutating func selfReportedTerms(_ f: Fields, sources: ActivitySources, method: Activity.Method?) -> SelfReportedTerms? {
        guard let node = f["self_reported"] else { return nil }
        let path = f.path("self_reported")
        guard let sf = fields(node, path, allowed: ["factor_multiplier"], what: "self-reported terms") else { return nil }
        guard let multiplier = decimal(sf, "factor_multiplier", required: true, ceiling: ExactDecimal(1), ceilingCode: .outOfRange)
        else { return nil }
        if sources == .partnerOnly {
            add(
                path, node, .conflictingKeys,
                "self_reported terms never apply with sources: partner_only (self-reported events of this kind are rejected); remove one")
            return nil
        }
        let factors: [(String, ExactDecimal)]
        switch method {
        case .perDistance(let r): factors = Self.named(r.gramsPerKm, "grams_per_km")
        case .perTrip(let r): factors = Self.named(r.gramsPerTrip, "grams_per_trip")
        case .perEvent(let g): factors = [("grams_per_event", g)]
        case .perWeight(let r): factors = r.gramsPerKg.keys.sorted().map { ("materials.\($0).grams_per_kg", r.gramsPerKg[$0]!) }
        case .perCount(let r): factors = [("grams_per_unit", r.gramsPerUnit)]
        case .baselineDelta(let r): factors = [("grid_factor.grams_per_kwh", r.gramsPerKwh)]
        case nil: factors = []
        }
        for (name, factor) in factors where factor.exactProduct(multiplier) == nil {
            add(
                sf.path("factor_multiplier"), sf["factor_multiplier"], .badDecimal,
                "\(multiplier) × \(name) \(factor) is not exact in \(ExactDecimal.maxScale) fraction digits; use a multiplier with fewer digits")
            return nil
        }
        return SelfReportedTerms(factorMultiplier: multiplier)
    }

    static func named(_ table: FactorTable, _ key: String) -> [(String, ExactDecimal)] {
        switch table {
        case .flat(let f): [(key, f)]
        case .byName(let t): t.keys.sorted().map { ("modes.\($0).\(key)", t[$0]!) }
        }
    }

    mutating func factor(_ f: Fields, _ key: String, ack: Bool) -> ExactDecimal? {
        decimal(f, key, required: true, ceiling: RuleSetParser.factorCeilings[key], ceilingCode: .factorTooHigh, acknowledged: ack)
    }

    mutating func factorTable(_ f: Fields, flatKey: String, variantsKey: String, ack: Bool) -> FactorTable? {
        switch (f[flatKey], f[variantsKey]) {
        case (nil, nil):
            missing(f, flatKey, "give '\(flatKey)' or '\(variantsKey)'")
            return nil
        case (.some, .some):
            add(f.path(variantsKey), f[variantsKey], .conflictingKeys, "give either '\(flatKey)' or '\(variantsKey)', not both")
            return nil
        case (.some, nil):
            return factor(f, flatKey, ack: ack).map { .flat($0) }
        case (nil, .some(let node)):
            var table: [String: ExactDecimal] = [:]
            var ok = true
            for (name, _, value) in namedEntries(node, f.path(variantsKey), what: variantsKey) ?? [] {
                let vp = "\(f.path(variantsKey)).\(name)"
                guard let vf = fields(value, vp, allowed: [flatKey], what: "a \(variantsKey == "modes" ? "mode" : "variant")"),
                    let d = factor(vf, flatKey, ack: ack)
                else {
                    ok = false
                    continue
                }
                table[name] = d
            }
            return ok && !table.isEmpty ? .byName(table) : nil
        }
    }

    mutating func tripLimits(_ f: Fields) -> TripLimits {
        let minKm = decimal(f, "min_distance_km", required: false, ceiling: ExactDecimal(10_000))
        let maxKm = decimal(f, "max_distance_km", required: false, ceiling: ExactDecimal(10_000))
        if let minKm, let maxKm, minKm > maxKm {
            add(f.path("min_distance_km"), f["min_distance_km"], .inconsistentRange, "min_distance_km \(minKm) is above max_distance_km \(maxKm)")
        }
        let minDuration = integer(f, "min_duration_s", required: false, range: 1...86_400, code: .absurdValue)
        let maxSpeed = decimal(f, "max_speed_kmh", required: false, ceiling: ExactDecimal(1000))
        return TripLimits(minDistanceKm: minKm, maxDistanceKm: maxKm, minDurationSeconds: minDuration, maxSpeedKmh: maxSpeed)
    }
}
