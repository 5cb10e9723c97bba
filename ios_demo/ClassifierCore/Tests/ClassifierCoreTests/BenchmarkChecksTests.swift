import CryptoKit
import XCTest
@testable import ClassifierCore

/// The benchmark that survives a phone: crop rect, rounds, thermal marking, golden check, compute
/// plan labels, folder hashes and the JSON the app writes (Resources/device_results_ios.json,
/// which tests/test_ios_demo.py also reads through `mvit-bench --device-results`).
final class BenchmarkChecksTests: XCTestCase {
    private func shipped() throws -> Data {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "golden", withExtension: nil))
        return try Data(contentsOf: dir.appendingPathComponent("shipped_models.json"))
    }

    private func sha(_ suffix: String) throws -> String {
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: shipped()) as? [String: Any])
        let models = try XCTUnwrap(doc["models"] as? [[String: Any]])
        return try XCTUnwrap(models.first { ($0["artifact"] as? String)?.hasSuffix(suffix) == true }?["meta_sha256"] as? String)
    }

    func testTheCoreMLCropRectIsNormalisedNotPixels() {
        // The 300x200 golden image: resized to 384x256, the 256x256 centre crop starts at x = 64.
        let spec = PreprocessSpec(inputSize: [256, 256])
        let r = CropGeometry.of(width: 300, height: 200, spec: spec).coreMLCropRect
        XCTAssertEqual(r.x, 1.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(r.y, 0, accuracy: 1e-12)
        XCTAssertEqual(r.width, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(r.height, 1, accuracy: 1e-12)
        for v in [r.x, r.y, r.width, r.height] { XCTAssertTrue((0...1).contains(v)) }
    }

    func testRoundsInterleaveWithACoolDownAndMarkThrottling() {
        var now: UInt64 = 0, turns = 0
        var log = [String](), pauses = [Int](), calls = [0, 0]
        let plan = RoundPlan(rounds: 3, runs: 6, warmup: 3, cooldownMs: 2000, rewarm: 1)
        let results = InterleavedBenchmark.run(
            configs: 2, plan: plan, scale: .iOS, clock: { now }, thermal: { turns >= 5 ? 2 : 1 },
            pause: { pauses.append($0) }, turn: { c, r in log.append("r\(r):c\(c)"); turns += 1 }
        ) { c in calls[c] += 1; now += UInt64(c + 1 + turns) * 1_000_000 }
        XCTAssertEqual(log, ["r0:c0", "r0:c1", "r1:c1", "r1:c0", "r2:c0", "r2:c1"])
        XCTAssertEqual(pauses, [Int](repeating: 2000, count: 5))
        XCTAssertEqual(calls, [11, 11])
        XCTAssertEqual(plan.runs(in: 0), 2)
        XCTAssertEqual(results[0].latency.runs, 6)
        XCTAssertEqual(results[0].firstMs, 2, accuracy: 1e-9)
        XCTAssertEqual(results[0].latency.medianMs, 5, accuracy: 1e-9)
        XCTAssertEqual(results.map { $0.thermalBefore.map(ThermalScale.iOS.name) }, ["fair", "fair"])
        XCTAssertEqual(results.map(\.throttled), [true, true])
        let unknown = InterleavedBenchmark.run(configs: 1, plan: RoundPlan(rounds: 1, runs: 2, warmup: 1, cooldownMs: 0), scale: .iOS,
                                               clock: { now }, thermal: nil, pause: { _ in XCTFail("no cool-down asked") }) { _ in now += 1 }
        XCTAssertNil(unknown[0].throttled)
        XCTAssertFalse(ThermalScale.iOS.throttles(1))
    }

    func testTheGoldenCheckUsesTheRecordAndStopsBeforeANearTie() throws {
        let float = try GoldenRecord.find(in: shipped(), field: "meta_sha256", sha256: sha("Model.mlpackage"), image: "checker_300x200.png")
        XCTAssertEqual(float.expected, ["metal", "cardboard", "trash"])
        XCTAssertEqual(float.checked, 3)
        XCTAssertFalse(float.check(["metal", "trash", "cardboard"]).passed)
        let int8 = try GoldenRecord.find(in: shipped(), field: "meta_sha256", sha256: sha("ModelInt8.mlpackage"), image: "checker_300x200.png")
        XCTAssertEqual(int8.checked, 2)
        XCTAssertTrue(int8.check(["metal", "paper", "glass"]).passed)
        XCTAssertThrowsError(try GoldenRecord.find(in: shipped(), field: "meta_sha256", sha256: String(repeating: "0", count: 64), image: "checker_300x200.png"))
    }

    func testComputePlanLabelsSayWhatRan() {
        XCTAssertEqual(ComputePlanSummary(operations: [.cpu: 3, .neuralEngine: 118]).computeUnits, "cpu_and_ne")
        XCTAssertEqual(ComputePlanSummary(operations: [.cpu: 5]).computeUnits, "cpu_only")
        XCTAssertEqual(ComputePlanSummary(operations: [.gpu: 5, .neuralEngine: 1]).computeUnits, "all")
        XCTAssertEqual(ComputePlanSummary(operations: [.cpu: 0]).computeUnits, "unknown")
        XCTAssertEqual(ComputePlanSummary(operations: [.cpu: 3, .neuralEngine: 118]).note, "MLComputePlan: 3 ops on the CPU, 118 ops on the Neural Engine")
    }

    private func hex(_ d: Data) -> String { SHA256.hash(data: d).map { String(format: "%02x", $0) }.joined() }

    func testTheFolderHashMatchesTheRecordedMlpackage() throws {
        // The installed model in the source tree, hashed as mvit.export.apps.fixtures hashes it.
        let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../MVitDemo/Models").standardizedFileURL
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: shipped()) as? [String: Any])
        let rec = try XCTUnwrap((doc["models"] as? [[String: Any]])?.first { ($0["artifact"] as? String)?.hasSuffix("/Model.mlpackage") == true })
        XCTAssertEqual(try FolderHash.sha256(folder: models.appendingPathComponent("Model.mlpackage"), digest: hex), rec["artifact_sha256"] as? String)
        XCTAssertEqual(FolderHash.sha256([(path: "b", data: Data()), (path: ".DS_Store", data: Data([1]))], digest: hex),
                       FolderHash.sha256([(path: "b", data: Data())], digest: hex), "hidden files are left out")
        // One file "a" holding "x": sha256 of "a\0" + sha256("x") + "\n", as Python's artifact_sha256 writes it.
        XCTAssertEqual(FolderHash.sha256([(path: "a", data: Data("x".utf8))], digest: hex),
                       hex(Data("a\u{0}\(hex(Data("x".utf8)))\n".utf8)))
    }

    func testTheAppsJSONDecodesValidatesAndReencodesUnchanged() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "device_results_ios", withExtension: "json"))
        let data = try Data(contentsOf: url)
        let report = try JSONDecoder().decode(BenchmarkReport.self, from: data)
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(report.rows.map(\.failed), [false, true])
        let again = try JSONSerialization.jsonObject(with: report.json()) as? NSDictionary
        XCTAssertEqual(again, try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }
}
