// swift-tools-version:6.0
import PackageDescription

// Data flows one way: AWS (request layer) ← Backup (watch → journal → pipeline → store, restore) ← CLI.
let package = Package(
    name: "ecocode-backup",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ecocode-backup", targets: ["ecocode-backup"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries: a module map and a shim header each; nothing else touches C.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),

        // Settings, credentials, SigV4, HTTP over libcurl, S3 and CloudWatch clients, retry.
        .target(name: "AWS", dependencies: [
            "CCurl", "COpenSSL",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "ecocode-backup", dependencies: [
            "AWS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "AWSTests", dependencies: ["AWS"]),
    ]
)
