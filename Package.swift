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
        .systemLibrary(name: "CSystem"),

        // Settings, credentials, SigV4, HTTP over libcurl, S3 and CloudWatch clients, retry.
        .target(name: "AWS", dependencies: [
            "CCurl", "COpenSSL",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // The SQLite change journal: tracked files, pending changes, in-flight uploads, failures, metrics.
        .target(name: "Journal", dependencies: ["CSQLite"]),

        // watch → journal → pipeline → store, and restore. `ObjectStore` is the seam (S3 or local).
        .target(name: "Backup", dependencies: ["AWS", "Journal", "CSystem"]),

        .executableTarget(name: "ecocode-backup", dependencies: [
            "AWS", "Backup", "Journal",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Benchmarks print figures; they are run by Benchmarks/run.py, never by the tests.
        .executableTarget(name: "hash-throughput", dependencies: ["Backup"], path: "Benchmarks/hash-throughput"),

        // moto behind a verifying proxy, fixtures, and running the real binary: shared by the test targets.
        .target(name: "TestSupport", dependencies: ["AWS"], path: "Tests/TestSupport"),
        .testTarget(name: "AWSTests", dependencies: ["AWS", "TestSupport"]),
        .testTarget(name: "BackupTests", dependencies: ["AWS", "Backup", "Journal", "TestSupport"]),
    ]
)
