import Hummingbird
import TanhuiService

/// Per-request state: the core context plus the authenticated caller, once known.
public struct TanhuiRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var maximumBodyBytes: Int
    /// Set by the operator-key middleware on `/v1/provinces/…` routes.
    public var operatorIdentity: OperatorIdentity?
    /// Set by the device-token middleware on `/v1/sync/…` routes.
    public var device: DeviceClaims?

    public init(source: Source) {
        coreContext = .init(source: source)
        maximumBodyBytes = 4 << 20
    }

    public var maxUploadSize: Int { maximumBodyBytes }
}
