import CryptoKit
import XCTest
@testable import ClassifierCore

/// ClassifierCore against the golden fixtures written by export/apps/fixtures.py (Resources/golden).
final class ClassifierCoreTests: XCTestCase {
    private func golden(_ name: String) throws -> Data {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "golden", withExtension: nil), "missing Resources/golden")
        return try Data(contentsOf: dir.appendingPathComponent(name))
    }

    private func fixtures() throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: golden("fixtures.json")) as? [String: Any])
    }

    private func list(_ key: String) throws -> [[String: Any]] {
        try XCTUnwrap(fixtures()[key] as? [[String: Any]])
    }

    private func spec(_ contract: Any?) throws -> PreprocessSpec {
        let data = try JSONSerialization.data(withJSONObject: try XCTUnwrap(contract))
        return try JSONDecoder().decode(PreprocessSpec.self, from: data)
    }

    private func int(_ v: Any?) -> Int { (v as? NSNumber)?.intValue ?? -1 }
    private func dbl(_ v: Any?) -> Double { (v as? NSNumber)?.doubleValue ?? .nan }

    func testParsesTheExampleMetadata() throws {
        let f = try ModelMeta.parse(golden("model_meta_float.json"))
        XCTAssertEqual(f.labels, ["cardboard", "glass", "metal", "paper", "plastic", "trash"])
        XCTAssertEqual(f.preprocess.inputSize, [256, 256])
        XCTAssertEqual(f.preprocess.resizeShort, 256)
        XCTAssertEqual(f.input.layout, .NHWC)
        XCTAssertEqual(f.outputKind, .logits)

        let q = try ModelMeta.parse(golden("model_meta_int8.json"))
        XCTAssertEqual(q.input.dtype, .int8)
        XCTAssertEqual(q.input.quantization?.zeroPoint, -128)
        XCTAssertEqual(q.output.quantization, QuantParams(scale: 0.0625, zeroPoint: -10))

        let raw = try ModelMeta.parse(golden("model_meta_uint8_raw.json"))
        XCTAssertEqual(raw.input.normalizationInModel, true)
        XCTAssertEqual(raw.outputKind, .probabilities)
    }

    func testRejectsInconsistentMetadata() throws {
        var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: golden("model_meta_float.json")) as? [String: Any])
        obj["num_classes"] = 5
        XCTAssertThrowsError(try ModelMeta.parse(JSONSerialization.data(withJSONObject: obj)))
        obj["num_classes"] = 6
        obj["schema"] = "mvit.model_meta/2"
        XCTAssertThrowsError(try ModelMeta.parse(JSONSerialization.data(withJSONObject: obj)))
        obj["schema"] = ModelMeta.schemaID
        var input = try XCTUnwrap(obj["input"] as? [String: Any])
        input["shape"] = [1, 224, 224, 3]
        obj["input"] = input
        XCTAssertThrowsError(try ModelMeta.parse(JSONSerialization.data(withJSONObject: obj)))
        XCTAssertThrowsError(try ModelMeta.parse(Data("{not json".utf8)))
    }

    func testCropGeometryMatchesPython() throws {
        let images = Dictionary(uniqueKeysWithValues: try list("images").map { ($0["file"] as! String, $0) })
        let cases = try list("cases")
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let img = try XCTUnwrap(images[c["image"] as! String])
            let s = try spec(c["contract"])
            let g = CropGeometry.of(width: int(img["upright_width"]), height: int(img["upright_height"]), spec: s)
            let e = try XCTUnwrap(c["geometry"] as? [String: Any])
            XCTAssertEqual(g, CropGeometry(resizedWidth: int(e["resized_width"]), resizedHeight: int(e["resized_height"]),
                                           left: int(e["left"]), top: int(e["top"]), width: int(e["width"]), height: int(e["height"])),
                           "\(c["image"]!) / \(c["contract_name"]!)")
            let (ux, uy) = Orientation.rotatedSize(width: int(img["width"]), height: int(img["height"]), degrees: int(img["rotation_degrees"]))
            XCTAssertEqual(ux, int(img["upright_width"]))
            XCTAssertEqual(uy, int(img["upright_height"]))
            let roi = g.visionRegionOfInterest
            XCTAssertGreaterThanOrEqual(roi.x, 0)
            XCTAssertLessThanOrEqual(roi.x + roi.width, 1.0 + 1e-12)
            XCTAssertLessThanOrEqual(roi.y + roi.height, 1.0 + 1e-12)
        }
    }

    func testResizeShortLikeTheContract() {
        XCTAssertEqual(PreprocessSpec.resizeShort(height: 224, width: 224, cropFraction: 0.875), 256)
        XCTAssertEqual(PreprocessSpec.resizeShort(height: 256, width: 256, cropFraction: 256.0 / 288.0), 288)
        XCTAssertEqual(PreprocessSpec.resizeShort(height: 224, width: 224, cropFraction: 0.9), 249)
    }

    func testQuantisationMatchesPythonSamples() throws {
        // The float samples of every case, quantised here, equal Python's quantised samples.
        for c in try list("cases") {
            let samples = try XCTUnwrap(c["samples"] as? [[String: Any]])
            let quant = try XCTUnwrap(c["quantized"] as? [String: [String: Any]])
            for (name, dtype) in [("int8", DType.int8), ("uint8", DType.uint8)] {
                let q = try XCTUnwrap(quant[name])
                let p = QuantParams(scale: dbl(q["scale"]), zeroPoint: int(q["zero_point"]))
                let expected = try XCTUnwrap(q["samples"] as? [NSNumber]).map(\.intValue)
                let got = samples.map { Postprocess.quantize(Float(dbl($0["value"])), params: p, dtype: dtype) }
                XCTAssertEqual(got, expected, "\(c["image"]!) / \(c["contract_name"]!) \(name)")
            }
        }
    }

    func testPostprocessCases() throws {
        let labels = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
        for c in try list("postprocess") {
            let name = c["name"] as! String
            let values = try XCTUnwrap(c["values"] as? [NSNumber])
            let kind = OutputKind(rawValue: c["kind"] as! String)!
            let out: [Float]
            if let q = c["quantization"] as? [String: Any] {
                out = Postprocess.dequantize(values.map(\.intValue), params: QuantParams(scale: dbl(q["scale"]), zeroPoint: int(q["zero_point"])))
            } else {
                out = values.map(\.floatValue)
            }
            let deq = try XCTUnwrap(c["dequantized"] as? [NSNumber]).map(\.floatValue)
            XCTAssertEqual(out, deq, name)
            let probs = try XCTUnwrap(c["probabilities"] as? [NSNumber]).map(\.doubleValue)
            for (a, b) in zip(Postprocess.scores(out, kind: kind), probs) { XCTAssertEqual(a, b, accuracy: 1e-6, name) }
            let top = Postprocess.classify(out, kind: kind, labels: labels, k: 3)
            let expected = try XCTUnwrap(c["top3"] as? [[String: Any]])
            XCTAssertEqual(top.map(\.index), expected.map { int($0["index"]) }, name)
            XCTAssertEqual(top.map(\.label), expected.map { $0["label"] as! String }, name)
        }
    }

    func testLabelsAndRollingAverage() throws {
        let meta = try ModelMeta.parse(golden("model_meta_float.json"))
        XCTAssertEqual(try Labels.resolve(meta: meta, labelsText: nil), meta.labels)
        XCTAssertEqual(Labels.parse("a\r\nb\n\n"), ["a", "b"])
        XCTAssertThrowsError(try Labels.resolve(meta: meta, labelsText: "a\nb\n"))

        var r = RollingAverage(window: 3)
        XCTAssertTrue(r.average.isNaN)
        [1.0, 2.0, 3.0, 10.0].forEach { r.add($0) }
        XCTAssertEqual(r.average, 5.0, accuracy: 1e-12)
        XCTAssertEqual(Postprocess.topK([0.1, 0.5, 0.0, 0.5], k: 3), [1, 3, 0])
        XCTAssertEqual(Orientation.exif(6).degrees, 90)
    }

    // MARK: the models installed in the apps (shipped_models.json, `python -m mvit.export.apps.fixtures --shipped`)

    private static let regenerate = "python -m mvit.export.apps.fixtures --shipped --app ios"

    private func shippedModels() throws -> [[String: Any]] {
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: golden("shipped_models.json")) as? [String: Any])
        XCTAssertEqual(doc["schema"] as? String, "mvit.app_fixtures.shipped/1")
        return try XCTUnwrap(doc["models"] as? [[String: Any]])
    }

    private func shippedMeta(_ model: [String: Any]) throws -> ModelMeta {
        try ModelMeta.parse(JSONSerialization.data(withJSONObject: try XCTUnwrap(model["meta"])))
    }

    private func cases(_ model: [String: Any]) throws -> [[String: Any]] {
        try XCTUnwrap(model["cases"] as? [[String: Any]])
    }

    func testShippedModelsCropAtTheirOwnContract() throws {
        // Vision resizes on the phone; the crop it is asked for must be the contract's, at each model's size.
        let images = Dictionary(uniqueKeysWithValues: try list("images").map { ($0["file"] as! String, $0) })
        let models = try shippedModels()
        XCTAssertTrue(models.contains { $0["app"] as? String == "ios" }, "the iOS models have recorded cases")
        for m in models {
            let meta = try shippedMeta(m)
            XCTAssertGreaterThanOrEqual(try cases(m).count, 3)
            for c in try cases(m) {
                let name = "\(m["artifact"]!) on \(c["image"]!)"
                let img = try XCTUnwrap(images[c["image"] as! String], name)
                let g = CropGeometry.of(width: int(img["upright_width"]), height: int(img["upright_height"]), spec: meta.preprocess)
                let e = try XCTUnwrap(c["geometry"] as? [String: Any])
                XCTAssertEqual(g, CropGeometry(resizedWidth: int(e["resized_width"]), resizedHeight: int(e["resized_height"]),
                                               left: int(e["left"]), top: int(e["top"]), width: int(e["width"]), height: int(e["height"])),
                               name)
                // The crop ClassifierCore computes fills exactly the recorded input tensor (not the record against itself).
                let input = try XCTUnwrap(c["input"] as? [String: Any])
                XCTAssertEqual(try XCTUnwrap(input["shape"] as? [NSNumber]).map(\.intValue).reduce(1, *), g.width * g.height * 3, name)
            }
        }
    }

    func testShippedModelsDecodeTheirRecordedOutputs() throws {
        for m in try shippedModels() {
            let meta = try shippedMeta(m)
            let labels = try Labels.resolve(meta: meta, labelsText: nil)
            for c in try cases(m) {
                let name = "\(m["artifact"]!) on \(c["image"]!)"
                let out = try XCTUnwrap(c["output"] as? [String: Any])
                let values = try XCTUnwrap(out["values"] as? [NSNumber])
                let decoded: [Float]
                if meta.output.dtype == .int8 || meta.output.dtype == .uint8 {
                    let q = try XCTUnwrap(meta.output.quantization, name)
                    // The metadata the app reads, against the artifact's own output tensor.
                    let recorded = try XCTUnwrap(m["output_quantization_in_artifact"] as? [String: Any], name)
                    XCTAssertEqual(QuantParams(scale: dbl(recorded["scale"]), zeroPoint: int(recorded["zero_point"])), q, name)
                    decoded = Postprocess.dequantize(values.map(\.intValue), params: q)
                } else {
                    decoded = values.map(\.floatValue)
                }
                XCTAssertEqual(decoded, try XCTUnwrap(c["dequantized"] as? [NSNumber]).map(\.floatValue), name)
                let top = Postprocess.classify(decoded, kind: meta.outputKind, labels: labels, k: 3)
                let expected = try XCTUnwrap(c["top3"] as? [[String: Any]])
                XCTAssertEqual(top.map(\.index), expected.map { int($0["index"]) }, name)
                XCTAssertEqual(top.map(\.label), expected.map { $0["label"] as! String }, name)
                for (t, e) in zip(top, expected) { XCTAssertEqual(t.score, dbl(e["score"]), accuracy: 1e-6, name) }
            }
        }
    }

    /// ios_demo/MVitDemo/Models, from this file's path (ios_demo/ClassifierCore/Tests/ClassifierCoreTests/).
    private func installedModels() throws -> URL {
        let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../MVitDemo/Models").standardized
        guard FileManager.default.fileExists(atPath: models.path) else {
            XCTFail("\(models.path) is missing: run the tests from a checkout of the repository")
            throw CocoaError(.fileNoSuchFile)
        }
        return models
    }

    /// sha256 of a file, or of a folder as mvit.export.apps.fixtures.artifact_sha256 computes it (sorted relative paths and file hashes).
    private func sha256(_ url: URL) throws -> String {
        func hex(_ d: Data) -> String { SHA256.hash(data: d).map { String(format: "%02x", $0) }.joined() }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { throw CocoaError(.fileNoSuchFile) }
        if !isDir.boolValue { return hex(try Data(contentsOf: url)) }
        let files = (FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])?.allObjects as? [URL] ?? [])
            .filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true }
            .map { String($0.standardized.path.dropFirst(url.standardized.path.count + 1)) }
            .filter { !$0.split(separator: "/").contains { $0.hasPrefix(".") } }
            .sorted()
        var lines = ""
        for rel in files { lines += "\(rel)\u{0}\(hex(try Data(contentsOf: url.appendingPathComponent(rel))))\n" }
        return hex(Data(lines.utf8))
    }

    func testShippedCasesWereRecordedFromTheInstalledFiles() throws {
        let models = try installedModels()
        let ios = try shippedModels().filter { $0["app"] as? String == "ios" }
        XCTAssertEqual(ios.count, 2, "both iOS variants have recorded cases: run `\(Self.regenerate)`")
        for m in ios {
            let meta = models.appendingPathComponent(((m["meta_file"] as? String ?? "") as NSString).lastPathComponent)
            let installed = try JSONSerialization.jsonObject(with: Data(contentsOf: meta)) as? NSDictionary
            XCTAssertEqual(installed, m["meta"] as? NSDictionary,
                           "\(meta.lastPathComponent) differs from the recorded metadata: run `\(Self.regenerate)`")
            let artifact = models.appendingPathComponent(((m["artifact"] as? String ?? "") as NSString).lastPathComponent)
            XCTAssertEqual(try sha256(artifact), m["artifact_sha256"] as? String,
                           "\(artifact.lastPathComponent) changed since its cases were recorded: run `\(Self.regenerate)`")
        }
    }

    func testTheBenchmarkInputIsAGoldenImage() throws {
        let models = try installedModels()
        let input = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: models.appendingPathComponent("benchmark_input.json"))) as? [String: Any])
        let images = Dictionary(uniqueKeysWithValues: try list("images").map { ($0["file"] as! String, $0) })
        let rec = try XCTUnwrap(images[input["image"] as? String ?? ""], "benchmark_input.json names no golden image")
        XCTAssertEqual(try Data(contentsOf: models.appendingPathComponent("benchmark_input.rgba")), try golden(rec["raw"] as! String))
        XCTAssertEqual(int(input["width"]), int(rec["width"]))
        XCTAssertEqual(int(input["rotation_degrees"]), int(rec["rotation_degrees"]))
    }

    // MARK: benchmark mode (docs/device_results.md)

    func testLatencyStatisticsAndTiming() {
        let s = LatencyStats.of([5, 1, 3, 2, 4, 10], warmup: 3)
        XCTAssertEqual(s.medianMs, 3.5, accuracy: 1e-12)
        XCTAssertEqual(s.p90Ms, 7.5, accuracy: 1e-12)
        XCTAssertEqual(s.minMs, 1)
        var now: UInt64 = 0
        let costs: [UInt64] = [30, 20, 20, 4, 6, 5, 5, 9]
        var calls = 0
        let m = Benchmark.measure(warmup: 3, runs: 5, clock: { now }) { now += costs[calls] * 1_000_000; calls += 1 }
        XCTAssertEqual(calls, 8)
        XCTAssertEqual(m.firstMs, 30, accuracy: 1e-9)
        XCTAssertEqual(m.latency.p90Ms, 7.8, accuracy: 1e-9)
    }

    func testBenchmarkReportFollowsTheSchema() throws {
        let lat = LatencyStats.of([9, 10, 11, 12], warmup: 10)
        let row = BenchmarkRow(model: "mobilevit_xxs", artifact: "ModelInt8.mlpackage", artifactSha256: nil, format: "coreml",
                               precision: "int8", accelerator: "cpu_and_ne", acceleratorUsed: "cpu_and_ne", threads: nil,
                               latency: lat, loadMs: 40, firstMs: 25, top3: [ScoredLabel(label: "plastic", score: 0.9)],
                               note: "Core ML does not report the unit that ran")
        let report = BenchmarkReport(created: Date(timeIntervalSince1970: 1_796_126_400),
                                     device: DeviceInfo(manufacturer: "Apple", model: "iPhone15,2", soc: nil, os: "iOS", osVersion: "18.1", abi: nil),
                                     rows: [row])
        XCTAssertEqual(report.problems, [])
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: report.json()) as? [String: Any])
        XCTAssertEqual(doc["schema"] as? String, "mvit.device_results/1")
        XCTAssertEqual(doc["created"] as? String, "2026-12-01T12:00:00Z")
        XCTAssertEqual(doc["source"] as? String, "ios-app")
        let device = try XCTUnwrap(doc["device"] as? [String: Any])
        XCTAssertTrue(device["soc"] is NSNull && device["abi"] is NSNull)
        let r = try XCTUnwrap((doc["rows"] as? [[String: Any]])?.first)
        XCTAssertTrue(r["threads"] is NSNull && r["artifact_sha256"] is NSNull)
        XCTAssertEqual((r["latency"] as? [String: Any])?["median_ms"] as? Double, 10.5)
        let bad = BenchmarkReport(created: Date(), device: report.device, rows: [BenchmarkRow(
            model: "m", artifact: "a", artifactSha256: nil, format: "coreml", precision: "fp32", accelerator: "npu",
            acceleratorUsed: "npu", threads: nil, latency: lat, loadMs: nil, firstMs: nil, top3: nil, note: "")])
        XCTAssertFalse(bad.problems.isEmpty)
        XCTAssertThrowsError(try bad.json())
    }

    func testAgreementAndFrameRate() {
        func c(_ idx: [Int]) -> [Classification] { idx.map { Classification(index: $0, label: "l\($0)", score: 0.1) } }
        XCTAssertEqual(Agreement(c([4, 1, 2]), c([4, 2, 1])), Agreement(c([4, 1, 2]), c([4, 1, 2])))
        XCTAssertTrue(Agreement(c([4, 1, 2]), c([4, 2, 1])).top1Agrees)
        XCTAssertEqual(Agreement(c([4, 1, 2]), c([1, 4, 5])).sharedTop3, 2)
        var f = FrameRate(window: 4)
        XCTAssertEqual(f.fps, 0)
        for i in 0..<10 { f.record(Double(i) * 0.05) }
        XCTAssertEqual(f.fps, 20, accuracy: 1e-9)
    }
}
