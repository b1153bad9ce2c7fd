// swift-tools-version: 6.0
// EdgediffKit: the Foundation-only core (manifest, tokenizer, noise, scheduler, pipeline loop, golden check,
// benchmark report); it builds and tests on Linux too. EdgediffCoreML: the Core ML sessions, Apple platforms only
// (its sources are wrapped in `#if canImport(CoreML)`, so on Linux it compiles to an empty module).
import PackageDescription

let package = Package(
    name: "Edgediff",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "EdgediffKit", targets: ["EdgediffKit"]),
        .library(name: "EdgediffCoreML", targets: ["EdgediffCoreML"]),
    ],
    targets: [
        .target(
            name: "EdgediffKit",
            path: "Sources/EdgediffKit",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "EdgediffCoreML",
            dependencies: ["EdgediffKit"],
            path: "Sources/EdgediffCoreML",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "EdgediffKitTests",
            dependencies: ["EdgediffKit"],
            path: "Tests/EdgediffKitTests",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
