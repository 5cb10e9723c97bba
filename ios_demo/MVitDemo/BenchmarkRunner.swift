import ClassifierCore
import CoreGraphics
import CoreML
import CryptoKit
import Foundation
import UIKit
import Vision

/// Benchmark mode: every installed model on every compute-unit choice, on the fixed golden input
/// (benchmark_input.rgba, a golden fixture image), timing `MLModel.prediction` alone on a prepared
/// input, interleaved over rounds (`RoundPlan`); the rows go to a JSON file in the schema
/// `mvit-bench --device-results` reads.
enum BenchmarkRunner {
    /// The golden input as a CGImage (raw RGBA from the bundle).
    static func goldenImage() throws -> (image: CGImage, name: String) {
        guard let jsonURL = Bundle.main.url(forResource: "benchmark_input", withExtension: "json"),
              let rgbaURL = Bundle.main.url(forResource: "benchmark_input", withExtension: "rgba") else {
            throw MetaError("benchmark_input.json/.rgba are not in the app: run python -m mvit.export.apps.fixtures")
        }
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as? [String: Any] ?? [:]
        guard let name = doc["image"] as? String, let w = doc["width"] as? Int, let h = doc["height"] as? Int,
              (doc["rotation_degrees"] as? Int) == 0 else {
            throw MetaError("benchmark_input.json: needs image, width, height and rotation_degrees 0")
        }
        let rgba = try Data(contentsOf: rgbaURL)
        guard rgba.count == w * h * 4, let provider = CGDataProvider(data: rgba as CFData),
              let image = CGImage(width: w, height: h, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: w * 4,
                                  space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                  bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                                  provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent) else {
            throw MetaError("benchmark_input.rgba does not hold \(w)x\(h) RGBA pixels")
        }
        return (image, name)
    }

    /// The model's input for `image`: the contract's crop, scaled by Core ML into the image input.
    /// `cropRect` is normalised (0-1, Core ML's MLFeatureValue+MLImageConversion.h), not pixels.
    static func input(for model: LoadedModel, image: CGImage) throws -> MLFeatureProvider {
        guard let (name, desc) = model.mlModel.modelDescription.inputDescriptionsByName.first, let constraint = desc.imageConstraint else {
            throw MetaError("the benchmark needs a Core ML model with an image input")
        }
        let r = CropGeometry.of(width: image.width, height: image.height, spec: model.meta.preprocess).coreMLCropRect
        let crop = CGRect(x: r.x, y: r.y, width: r.width, height: r.height)
        let value = try MLFeatureValue(cgImage: image, orientation: .up, constraint: constraint,
                                       options: [.cropRect: crop, .cropAndScale: VNImageCropAndScaleOption.scaleFill.rawValue])
        return try MLDictionaryFeatureProvider(dictionary: [name: value])
    }

    /// Scores of one prediction, whatever the output is (a raw array or a classifier's dictionary).
    static func scores(_ out: MLFeatureProvider, model: LoadedModel) throws -> [Float] {
        for name in out.featureNames {
            guard let v = out.featureValue(for: name) else { continue }
            if let a = v.multiArrayValue { return Classifier.scores(from: a, meta: model.meta) }
            if v.type == .dictionary {
                let d = v.dictionaryValue
                return model.labels.map { Float(truncating: d[$0 as NSString] ?? 0) }
            }
        }
        throw MetaError("the model returned no usable output")
    }

    /// The hardware identifier, e.g. `iPhone15,2`.
    static func hardwareModel() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// 50 timed runs per configuration over 5 interleaved rounds, 3 s cool-down between turns.
    static let schedule = RoundPlan(rounds: 5, runs: 50, warmup: 10, cooldownMs: 3000)

    /// Lower-case hex sha256 (CryptoKit; ClassifierCore takes it as a parameter).
    static func sha256Hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    /// The compute units `MLComputePlan` assigns the model's operations to (iOS 17.4+); nil before.
    static func computePlan(of model: LoadedModel) async -> ComputePlanSummary? {
        guard #available(iOS 17.4, *) else { return nil }
        return await plannedDevices(of: model)
    }

    /// Counts the operations (ML program) or layers (neural network) per preferred compute device.
    @available(iOS 17.4, *)
    private static func plannedDevices(of model: LoadedModel) async -> ComputePlanSummary? {
        guard let url = model.variant.compiledURL else { return nil }
        let config = MLModelConfiguration()
        config.computeUnits = model.compute.units
        guard let plan = try? await MLComputePlan.load(contentsOf: url, configuration: config) else { return nil }
        var ops = [ComputeDeviceKind: Int]()
        func count(_ usage: MLComputePlan.DeviceUsage?) {
            guard let device = usage?.preferred else { return }
            switch device {
            case .cpu: ops[.cpu, default: 0] += 1
            case .gpu: ops[.gpu, default: 0] += 1
            case .neuralEngine: ops[.neuralEngine, default: 0] += 1
            @unknown default: break
            }
        }
        switch plan.modelStructure {
        case .program(let program):
            for op in program.functions["main"]?.block.operations ?? [] { count(plan.deviceUsage(for: op)) }
        case .neuralNetwork(let network):
            for layer in network.layers { count(plan.deviceUsage(for: layer)) }
        default:
            return nil
        }
        return ComputePlanSummary(operations: ops)
    }

    /// One configuration: a loaded model, its prepared input, and what identifies it in the report.
    /// Handed to the benchmark queue once and used only there.
    private struct Config: @unchecked Sendable {
        let model: LoadedModel
        let input: MLFeatureProvider
        let artifactSha256: String
        let golden: GoldenRecord
        let plan: ComputePlanSummary?
    }

    /// Every installed model on every compute-unit choice, interleaved over `schedule`'s rounds with a
    /// cool-down and `ProcessInfo.thermalState` around each turn; every row's top-3 is checked
    /// against the golden record. Writes the JSON into Documents.
    static func run(progress: @escaping @Sendable (String) -> Void) async throws -> (BenchmarkReport, URL) {
        let golden = try goldenImage()
        guard let recordURL = Bundle.main.url(forResource: "shipped_models", withExtension: "json") else {
            throw MetaError("shipped_models.json (the golden record) is not in the app: regenerate the Xcode project")
        }
        let record = try Data(contentsOf: recordURL)
        var configs = [Config]()
        for variant in ModelVariant.allCases where variant.isInstalled {
            guard let compiled = variant.compiledURL, let metaURL = variant.metaURL else { continue }
            let sha = try FolderHash.sha256(folder: compiled, digest: sha256Hex)
            let expected = try GoldenRecord.find(in: record, field: "meta_sha256", sha256: sha256Hex(Data(contentsOf: metaURL)), image: golden.name)
            for compute in ComputeChoice.allCases {
                progress("\(variant.title) on \(compute.title): loading")
                let model = try await LoadedModel.load(variant, compute: compute)
                configs.append(Config(model: model, input: try input(for: model, image: golden.image), artifactSha256: sha,
                                      golden: expected, plan: await computePlan(of: model)))
            }
        }
        let results = try await timed(configs, progress: progress)
        let rows = try zip(configs, results).map { try row($0, $1, image: golden.name) }
        let report = BenchmarkReport(created: Date(),
                                     device: DeviceInfo(manufacturer: "Apple", model: hardwareModel(), soc: nil, os: "iOS",
                                                        osVersion: await MainActor.run { UIDevice.current.systemVersion }, abi: nil),
                                     rows: rows)
        let dir = try FileManager.default.url(for: .documentDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let url = dir.appendingPathComponent("mvit-device-results-\(Int(Date().timeIntervalSince1970)).json")
        try report.write(to: url)
        return (report, url)
    }

    /// The interleaved rounds on a queue of their own: the cool-down sleeps, which must not block
    /// Swift concurrency's shared threads.
    private static func timed(_ configs: [Config], progress: @escaping @Sendable (String) -> Void) async throws -> [RoundsResult] {
        let queue = DispatchQueue(label: "mvit.benchmark", qos: .userInitiated)
        return try await withCheckedThrowingContinuation { cont in
            queue.async {
                cont.resume(with: Result {
                    try InterleavedBenchmark.run(
                        configs: configs.count, plan: schedule, scale: .iOS, clock: { DispatchTime.now().uptimeNanoseconds },
                        thermal: { ProcessInfo.processInfo.thermalState.rawValue },
                        pause: { Thread.sleep(forTimeInterval: Double($0) / 1000) },
                        turn: { c, r in progress("round \(r + 1)/\(schedule.rounds): \(configs[c].model.variant.title) on \(configs[c].model.compute.title)") }
                    ) { c in _ = try configs[c].model.mlModel.prediction(from: configs[c].input) }
                })
            }
        }
    }

    /// One JSON row; one more prediction on the golden input gives the top-3 that is checked.
    private static func row(_ c: Config, _ m: RoundsResult, image: String) throws -> BenchmarkRow {
        let model = c.model
        let out = try model.mlModel.prediction(from: c.input)
        let top = Postprocess.classify(try scores(out, model: model), kind: model.meta.outputKind, labels: model.labels, k: 3)
        let check = c.golden.check(top.map(\.label))
        let notes = [c.plan?.note ?? "no MLComputePlan before iOS 17.4: the compute units that ran are unknown",
                     "input: \(image)", "artifact_sha256: the compiled \(model.variant.rawValue).mlmodelc in the app",
                     check.passed ? "" : "FAILED: top-3 differs from the golden record"]
        return BenchmarkRow(
            model: model.meta.architecture ?? "unknown", artifact: "\(model.variant.rawValue).mlmodelc", artifactSha256: c.artifactSha256,
            format: "coreml", precision: model.meta.precision ?? "fp32", accelerator: model.compute.id,
            acceleratorUsed: c.plan?.computeUnits ?? "unknown", threads: nil, latency: m.latency, loadMs: model.loadMs, firstMs: m.firstMs,
            top3: top.map { ScoredLabel(label: $0.label, score: $0.score) }, note: notes.filter { !$0.isEmpty }.joined(separator: "; "),
            rounds: m.rounds, thermalBefore: m.thermalBefore.map(ThermalScale.iOS.name), thermalAfter: m.thermalAfter.map(ThermalScale.iOS.name),
            throttled: m.throttled, golden: check)
    }
}
