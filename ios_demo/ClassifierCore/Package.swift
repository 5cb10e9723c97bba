// swift-tools-version:5.9
// Foundation-only core of the iOS demo: metadata, crop maths, (de)quantisation, top-k, labels.
// `swift test` runs its XCTest suite on the golden fixtures written by export/apps/fixtures.py.
import PackageDescription

let package = Package(
    name: "ClassifierCore",
    platforms: [.iOS(.v17), .macOS(.v13)],
    products: [
        .library(name: "ClassifierCore", targets: ["ClassifierCore"]),
    ],
    targets: [
        .target(name: "ClassifierCore"),
        .testTarget(
            name: "ClassifierCoreTests",
            dependencies: ["ClassifierCore"],
            resources: [.copy("Resources/golden"), .copy("Resources/device_results_ios.json")]
        ),
    ]
)
