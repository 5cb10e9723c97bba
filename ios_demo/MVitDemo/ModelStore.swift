import ClassifierCore
import CoreML
import Foundation
import Vision

/// Installed model variants: the bundle names written by export/app_install.py.
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

enum ComputeChoice: String, CaseIterable, Identifiable {
    case all = "All"
    case cpuAndGPU = "CPU+GPU"
    case cpuOnly = "CPU only"

    var id: String { rawValue }
    var units: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuOnly: return .cpuOnly
        }
    }
}

struct LoadedModel {
    let variant: ModelVariant
    let meta: ModelMeta
    let labels: [String]
    let vnModel: VNCoreMLModel

    static func load(_ variant: ModelVariant, compute: ComputeChoice) throws -> LoadedModel {
        guard let modelURL = variant.compiledURL, let metaURL = variant.metaURL else {
            throw MetaError("\(variant.rawValue).mlpackage is not installed: run mvit-export … --app ios")
        }
        let meta = try ModelMeta.parse(Data(contentsOf: metaURL))
        let labelsText = Bundle.main.url(forResource: "labels", withExtension: "txt").flatMap { try? String(contentsOf: $0, encoding: .utf8) }
        let labels = try Labels.resolve(meta: meta, labelsText: labelsText)
        let config = MLModelConfiguration()
        config.computeUnits = compute.units
        let ml = try MLModel(contentsOf: modelURL, configuration: config)
        return LoadedModel(variant: variant, meta: meta, labels: labels, vnModel: try VNCoreMLModel(for: ml))
    }
}
