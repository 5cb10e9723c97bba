import ClassifierCore
import CoreML
import Foundation
import Vision

/// Installed model variants: the bundle names written by mvit.export.apps.install (export/apps/slots.py).
enum ModelVariant: String, CaseIterable, Identifiable {
    case float = "Model"
    case int8 = "ModelInt8"

    var id: String { rawValue }
    var title: String { self == .float ? "float" : "int8" }
    var metaResource: String { self == .float ? "model_meta" : "model_int8_meta" }

    /// Xcode compiles `<name>.mlpackage` into `<name>.mlmodelc` inside the app bundle.
    var compiledURL: URL? { Bundle.main.url(forResource: rawValue, withExtension: "mlmodelc") }
    var metaURL: URL? { Bundle.main.url(forResource: metaResource, withExtension: "json") }
    var isInstalled: Bool { compiledURL != nil && metaURL != nil }
}

/// Core ML compute units; `id` is the `accelerator` vocabulary of docs/device_results.md.
enum ComputeChoice: String, CaseIterable, Identifiable {
    case cpuOnly = "cpu_only"
    case cpuAndGPU = "cpu_and_gpu"
    case cpuAndNeuralEngine = "cpu_and_ne"
    case all = "all"

    var id: String { rawValue }
    var title: String {
        switch self {
        case .cpuOnly: return "CPU"
        case .cpuAndGPU: return "CPU+GPU"
        case .cpuAndNeuralEngine: return "CPU+NE"
        case .all: return "All"
        }
    }
    var units: MLComputeUnits {
        switch self {
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .all: return .all
        }
    }
}

/// A loaded model with its metadata and labels. Immutable, so it can be handed to the video queue.
final class LoadedModel: @unchecked Sendable {
    let variant: ModelVariant
    let compute: ComputeChoice
    let meta: ModelMeta
    let labels: [String]
    let mlModel: MLModel
    let vnModel: VNCoreMLModel
    /// Time to load and compile for the compute units, milliseconds.
    let loadMs: Double

    private init(variant: ModelVariant, compute: ComputeChoice, meta: ModelMeta, labels: [String], mlModel: MLModel, vnModel: VNCoreMLModel, loadMs: Double) {
        self.variant = variant
        self.compute = compute
        self.meta = meta
        self.labels = labels
        self.mlModel = mlModel
        self.vnModel = vnModel
        self.loadMs = loadMs
    }

    /// Loads off the main thread (Core ML's async loader); call from a Task.
    static func load(_ variant: ModelVariant, compute: ComputeChoice) async throws -> LoadedModel {
        guard let modelURL = variant.compiledURL, let metaURL = variant.metaURL else {
            throw MetaError("\(variant.rawValue).mlpackage is not installed: run mvit-export … --app ios")
        }
        let meta = try ModelMeta.parse(Data(contentsOf: metaURL))
        let labelsText = Bundle.main.url(forResource: "labels", withExtension: "txt").flatMap { try? String(contentsOf: $0, encoding: .utf8) }
        let labels = try Labels.resolve(meta: meta, labelsText: labelsText)
        let config = MLModelConfiguration()
        config.computeUnits = compute.units
        let start = DispatchTime.now().uptimeNanoseconds
        let ml = try await MLModel.load(contentsOf: modelURL, configuration: config)
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return LoadedModel(variant: variant, compute: compute, meta: meta, labels: labels, mlModel: ml,
                           vnModel: try VNCoreMLModel(for: ml), loadMs: loadMs)
    }
}
