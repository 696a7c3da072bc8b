/// One problem found in a rule-set document or an event, positioned for an operator to fix.
///
/// Parsers collect every issue at once instead of stopping at the first, so an operator
/// fixes a document in one round trip.
package struct ValidationIssue: Sendable, Hashable, CustomStringConvertible {
    /// Dotted path into the document, e.g. `activities[1].modes.metro.grams_per_km`; empty for the whole document.
    package let path: String
    /// 1-based line in the source text, when known (YAML and JSON both report it).
    package let line: Int?
    /// 1-based column (in Unicode scalars) in the source text, when known.
    package let column: Int?
    package let code: Code
    package let message: String

    package init(path: String, line: Int? = nil, column: Int? = nil, code: Code, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.code = code
        self.message = message
    }

    /// Stable machine-readable codes; the raw values are part of the API (HTTP problem details, CLI output).
    package enum Code: String, Sendable, Hashable, CaseIterable {
        // Document-level
        /// Not parseable as YAML/JSON (includes duplicate mapping keys).
        case syntax
        /// Larger than `RuleSetParser.maxDocumentBytes`; rejected before parsing.
        case documentTooLarge = "document_too_large"
        case notUTF8 = "not_utf8"
        /// YAML anchors (`&a`) and aliases (`*a`) are refused so alias bombs cannot expand.
        case aliasNotAllowed = "alias_not_allowed"
        /// Nesting deeper than the format ever needs.
        case tooDeep = "too_deep"
        /// A list or map longer than its limit, or a string longer than its limit.
        case tooMany = "too_many"
        // Structure
        case unknownKey = "unknown_key"
        case wrongType = "wrong_type"
        case missing
        case empty
        /// Two alternatives given where exactly one is allowed (e.g. `grams_per_km` and `modes`).
        case conflictingKeys = "conflicting_keys"
        case unknownMethod = "unknown_method"
        /// An activity's `sources` is neither `any` nor `partner_only`.
        case unknownSources = "unknown_sources"
        case badIdentifier = "bad_identifier"
        // Values
        case badDecimal = "bad_decimal"
        case notPositive = "not_positive"
        case outOfRange = "out_of_range"
        case unknownProvince = "unknown_province"
        case unknownTimezone = "unknown_timezone"
        case badTimestamp = "bad_timestamp"
        /// A factor above its ceiling without `acknowledge_high_factor: true`.
        case factorTooHigh = "factor_too_high"
        /// A non-factor value no programme would use (multiplier > 10, speed limit > 1000 km/h, …).
        case absurdValue = "absurd_value"
        /// A minimum above its maximum, or a campaign whose `to` is not after `from`.
        case inconsistentRange = "inconsistent_range"
        // Cross-references
        case duplicateKind = "duplicate_kind"
        case duplicateCap = "duplicate_cap"
        case duplicateCampaign = "duplicate_campaign"
        case capUnknownKind = "cap_unknown_kind"
        case campaignUnknownKind = "campaign_unknown_kind"
        case overlappingCampaigns = "overlapping_campaigns"
        // Publication (need database facts; see `RuleSetValidator.checkPublication`)
        case versionNotIncreasing = "version_not_increasing"
        case retroactiveEffectiveFrom = "retroactive_effective_from"
        // Events
        /// An event field is missing, negative, zero where it must be positive, or inconsistent.
        case invalid
    }

    /// `path:line:column: code: message`, the form the CLI prints.
    package var description: String {
        var s = path.isEmpty ? "(document)" : path
        if let line { s += ":\(line)" }
        if let column { s += ":\(column)" }
        return s + ": \(code.rawValue): \(message)"
    }
}

/// Thrown by `RuleSetParser.parse` with every issue found.
package struct RuleSetInvalid: Error, Sendable, CustomStringConvertible {
    package let issues: [ValidationIssue]
    package init(issues: [ValidationIssue]) { self.issues = issues }
    package var description: String { issues.map(\.description).joined(separator: "\n") }
}
