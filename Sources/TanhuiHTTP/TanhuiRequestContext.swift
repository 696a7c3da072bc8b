import Foundation
package import Hummingbird
package import TanhuiService

/// Per-request state: the core context plus the authenticated caller, once known.
package struct TanhuiRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    package var maximumBodyBytes: Int
    /// Set by the operator-key middleware on `/v1/provinces/…` routes.
    package var operatorIdentity: OperatorIdentity?
    /// Set by the partner-key middleware on partner routes (`/v1/provinces/{code}/partner…`).
    package var partner: PartnerIdentity?
    /// Set by the device-token middleware on `/v1/sync/…` routes.
    package var device: DeviceClaims?

    package init(source: Source) {
        coreContext = .init(source: source)
        maximumBodyBytes = 4 << 20
    }

    package var maxUploadSize: Int { maximumBodyBytes }
}

extension Request {
    /// The credential of `Authorization: Bearer …`, trimmed; nil when absent or another scheme.
    var bearerCredential: String? {
        guard let authorization = headers[.authorization], authorization.hasPrefix("Bearer ") else { return nil }
        return String(authorization.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
    }
}
