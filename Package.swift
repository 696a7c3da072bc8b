// swift-tools-version:6.1
import PackageDescription

/// Two siblings at the bottom: TanhuiCore (pure rules and arithmetic, no I/O) and TanhuiPostgres
/// (the only module that calls libpq). TanhuiService joins them; TanhuiHTTP and the CLI are thin
/// adapters over TanhuiService. Every module a file imports is declared below; `Scripts/test.sh`
/// enforces it (SwiftPM's `--explicit-target-dependency-import-check error` for this package's
/// targets, `Scripts/check-imports.py` for products). Cross-target API is `package`, never `public`: nothing
/// outside this package links these modules.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Tanhui",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tanhui", targets: ["TanhuiCLI"]),
        .executable(name: "tanhui-load", targets: ["TanhuiLoad"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
        .package(url: "https://github.com/vapor/jwt-kit", exact: "5.8.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", exact: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // Pure domain: rule sets, exact decimals, evaluation. No I/O.
        .target(
            name: "TanhuiCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strictSettings
        ),
        // The only module that calls libpq.
        .target(
            name: "TanhuiPostgres",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "TanhuiService",
            dependencies: [
                "TanhuiCore",
                "TanhuiPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "TanhuiHTTP",
            dependencies: [
                "TanhuiCore",
                // Only to tell an unavailable database (503) from a bug (500), and for pool gauges.
                "TanhuiPostgres",
                "TanhuiService",
                .product(name: "Hummingbird", package: "hummingbird"),
                // Header names Hummingbird does not predefine (Tanhui-Report-Note, Referrer-Policy).
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "TanhuiCLI",
            dependencies: [
                "TanhuiCore",
                "TanhuiHTTP",
                // `migrate` and `serve` read the migrator's status; nothing else touches libpq types.
                "TanhuiPostgres",
                "TanhuiService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Load generator and baselines for Scripts/bench.sh (release-built, loopback only).
        .executableTarget(
            name: "TanhuiLoad",
            dependencies: [
                "TanhuiCore",
                "TanhuiPostgres",
                "TanhuiService",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TanhuiCoreTests",
            dependencies: ["TanhuiCore"],
            swiftSettings: strictSettings
        ),
        // Database-free tests of the adapters' pure pieces (cursors, statements, problem mapping).
        .testTarget(
            name: "TanhuiUnitTests",
            dependencies: [
                "TanhuiCore",
                "TanhuiHTTP",
                "TanhuiPostgres",
                "TanhuiService",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TanhuiIntegrationTests",
            dependencies: [
                "TanhuiPostgres",
                "TanhuiService",
                "TanhuiHTTP",
                "TanhuiCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
