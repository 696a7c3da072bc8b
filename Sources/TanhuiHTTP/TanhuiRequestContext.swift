import Hummingbird

/// Per-request state: the core context plus the authenticated caller, once known.
public struct TanhuiRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var maximumBodyBytes: Int

    public init(source: Source) {
        coreContext = .init(source: source)
        maximumBodyBytes = 4 << 20
    }

    public var maxUploadSize: Int { maximumBodyBytes }
}
