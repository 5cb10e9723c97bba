import ClassifierCore
import CoreGraphics
import CoreML
import Foundation
import UIKit
import Vision

/// Benchmark mode: every installed model on every compute-unit choice, on the fixed golden input
/// (benchmark_input.rgba, a golden fixture image), timing `MLModel.prediction` alone on a prepared
/// input; the rows go to a JSON file in the schema `mvit-bench --device-results` reads.
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
    static func input(for model: LoadedModel, image: CGImage) throws -> MLFeatureProvider {
        guard let (name, desc) = model.mlModel.modelDescription.inputDescriptionsByName.first, let constraint = desc.imageConstraint else {
            throw MetaError("the benchmark needs a Core ML model with an image input")
        }
        let r = CropGeometry.of(width: image.width, height: image.height, spec: model.meta.preprocess).normalizedRectTopLeft
        let crop = CGRect(x: r.x * Double(image.width), y: r.y * Double(image.height),
                          width: r.width * Double(image.width), height: r.height * Double(image.height))
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

    static func run(warmup: Int = 10, runs: Int = 50, progress: @escaping @Sendable (String) -> Void) async throws -> (BenchmarkReport, URL) {
        let golden = try goldenImage()
        var rows = [BenchmarkRow]()
        for variant in ModelVariant.allCases where variant.isInstalled {
            for compute in ComputeChoice.allCases {
                progress("\(variant.title) on \(compute.title): loading")
                let model = try await LoadedModel.load(variant, compute: compute)
                let provider = try input(for: model, image: golden.image)
                progress("\(variant.title) on \(compute.title): \(runs) runs")
                var last: MLFeatureProvider?
                let m = try Benchmark.measure(warmup: warmup, runs: runs, clock: { DispatchTime.now().uptimeNanoseconds }) {
                    last = try model.mlModel.prediction(from: provider)
                }
                let top = Postprocess.classify(try scores(last!, model: model), kind: model.meta.outputKind, labels: model.labels, k: 3)
                rows.append(BenchmarkRow(
                    model: model.meta.architecture ?? "unknown", artifact: "\(variant.rawValue).mlpackage", artifactSha256: nil,
                    format: "coreml", precision: model.meta.precision ?? "fp32", accelerator: compute.id, acceleratorUsed: compute.id,
                    threads: nil, latency: m.latency, loadMs: model.loadMs, firstMs: m.firstMs,
                    top3: top.map { ScoredLabel(label: $0.label, score: $0.score) },
                    note: "Core ML does not report which units ran; input: \(golden.name); artifact_sha256: the app holds the compiled .mlmodelc"))
            }
        }
        let report = BenchmarkReport(created: Date(),
                                     device: DeviceInfo(manufacturer: "Apple", model: hardwareModel(), soc: nil, os: "iOS",
                                                        osVersion: await MainActor.run { UIDevice.current.systemVersion }, abi: nil),
                                     rows: rows)
        let dir = try FileManager.default.url(for: .documentDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let url = dir.appendingPathComponent("mvit-device-results-\(Int(Date().timeIntervalSince1970)).json")
        try report.write(to: url)
        return (report, url)
    }
}
