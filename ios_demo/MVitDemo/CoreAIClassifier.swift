import ClassifierCore
import CoreImage
import CoreVideo
import Foundation
import ImageIO

/// What the camera and photo paths call: the Core ML classifier (Vision) or the Core AI one.
protocol FrameClassifier: Sendable {
    func classify(pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) throws -> FrameResult
    func classify(cgImage: CGImage, orientation: CGImagePropertyOrientation) throws -> FrameResult
}

extension Classifier: FrameClassifier {}

/// An installed Core AI asset (`mvit-export --format coreai`): `Model.aimodel` / `ModelInt8.aimodel` in the
/// bundle, with its metadata inside (`creatorDefinedMetadata.mvit` of the asset's metadata.json).
enum CoreAIAssets {
    static func url(for variant: ModelVariant) -> URL? {
        Bundle.main.url(forResource: variant.rawValue, withExtension: "aimodel")
    }

    /// model_meta as mvit wrote it into the asset (a JSON string under creatorDefinedMetadata.mvit).
    static func meta(of asset: URL) throws -> ModelMeta {
        let data = try Data(contentsOf: asset.appendingPathComponent("metadata.json"))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let custom = root["creatorDefinedMetadata"] as? [String: Any],
              let text = custom["mvit"] as? String else {
            throw MetaError("\(asset.lastPathComponent) has no mvit metadata")
        }
        return try ModelMeta.parse(Data(text.utf8))
    }
}

#if canImport(CoreAI)
import CoreAI

/// Core AI (iOS 27): `AIModel(contentsOf:)`, its "main" function, fed from a pixel buffer: the contract's
/// resize (short side) and centre crop by Core Image, then /255, mean/std and channel order into the
/// NCHW float tensor the asset takes (float16 for an fp16 asset; `uint8-nhwc` exports take 0..255 NHWC).
@available(iOS 27.0, *)
final class CoreAIClassifier: FrameClassifier, @unchecked Sendable {
    let meta: ModelMeta
    let labels: [String]
    private let function: InferenceFunction
    private let context = CIContext(options: [.workingColorSpace: NSNull()])

    private init(meta: ModelMeta, labels: [String], function: InferenceFunction) {
        self.meta = meta
        self.labels = labels
        self.function = function
    }

    /// The Core AI classifier of `variant` when its `.aimodel` is installed, else nil.
    static func loadIfInstalled(_ variant: ModelVariant) async throws -> CoreAIClassifier? {
        guard let url = CoreAIAssets.url(for: variant) else { return nil }
        let meta = try CoreAIAssets.meta(of: url)
        let labelsText = Bundle.main.url(forResource: "labels", withExtension: "txt").flatMap { try? String(contentsOf: $0, encoding: .utf8) }
        let labels = try Labels.resolve(meta: meta, labelsText: labelsText)
        let model = try await AIModel(contentsOf: url)
        let function = try model.loadFunction(named: "main")
        return CoreAIClassifier(meta: meta, labels: labels, function: function)
    }

    func classify(pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) throws -> FrameResult {
        try run(CIImage(cvPixelBuffer: pixelBuffer).oriented(orientation))
    }

    func classify(cgImage: CGImage, orientation: CGImagePropertyOrientation) throws -> FrameResult {
        try run(CIImage(cgImage: cgImage).oriented(orientation))
    }

    /// RGBA bytes of the contract's crop (short side resized, centre crop), input height x width.
    private func crop(_ image: CIImage) -> [UInt8] {
        let spec = meta.preprocess
        let w = Int(image.extent.width), h = Int(image.extent.height)
        let g = CropGeometry.of(width: w, height: h, spec: spec)
        let scaled = image.transformed(by: CGAffineTransform(scaleX: CGFloat(g.resizedWidth) / CGFloat(w),
                                                             y: CGFloat(g.resizedHeight) / CGFloat(h)))
        // Core Image's origin is bottom-left: the crop's top row is resizedHeight - top - height from the bottom.
        let rect = CGRect(x: g.left, y: g.resizedHeight - g.top - g.height, width: g.width, height: g.height)
        var rgba = [UInt8](repeating: 0, count: g.width * g.height * 4)
        context.render(scaled.cropped(to: rect).transformed(by: CGAffineTransform(translationX: -rect.minX, y: -rect.minY)),
                       toBitmap: &rgba, rowBytes: g.width * 4, bounds: CGRect(x: 0, y: 0, width: g.width, height: g.height),
                       format: .RGBA8, colorSpace: nil)
        return rgba
    }

    /// The asset's input: NCHW normalised per the contract, or raw 0..255 NHWC when it normalises itself.
    private func input(_ rgba: [UInt8]) -> [Float] {
        let spec = meta.preprocess, h = spec.inputHeight, w = spec.inputWidth
        if meta.input.normalizationInModel == true {
            var x = [Float](repeating: 0, count: h * w * 3)
            for p in 0..<(h * w) { for c in 0..<3 { x[p * 3 + c] = Float(rgba[p * 4 + c]) } }
            return x
        }
        var x = [Float](repeating: 0, count: 3 * h * w)
        let order = spec.channelOrder == .bgr ? [2, 1, 0] : [0, 1, 2]
        for c in 0..<3 {
            let src = order[c], mean = Float(spec.mean[c]), std = Float(spec.std[c]), scale = Float(spec.scale)
            for p in 0..<(h * w) { x[c * h * w + p] = (Float(rgba[p * 4 + src]) * scale - mean) / std }
        }
        return x
    }

    private func run(_ image: CIImage) throws -> FrameResult {
        let start = CFAbsoluteTimeGetCurrent()
        let x = input(crop(image))
        let shape = meta.input.shape
        let array = meta.input.dtype == .float16 ? NDArray(scalars: x.map { Float16($0) }, shape: shape)
                                                 : NDArray(scalars: x, shape: shape)
        let t0 = CFAbsoluteTimeGetCurrent()
        let scores = try blocking { [function] in
            var outputs = try await function.run(inputs: ["image": array])
            guard let logits = outputs.remove("logits")?.ndArray else { throw MetaError("no logits output") }
            return logits.floats()
        }
        let t1 = CFAbsoluteTimeGetCurrent()
        let top = Postprocess.classify(scores, kind: meta.outputKind, labels: labels, k: 3)
        return FrameResult(top: top, visionMs: (t1 - t0) * 1000, totalMs: (CFAbsoluteTimeGetCurrent() - start) * 1000)
    }

    /// Waits for an async call on the calling (video or photo) queue, as the Vision path blocks there.
    private func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        var result: Result<T, Error>!
        Task.detached {
            do { result = .success(try await body()) } catch { result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try result.get()
    }
}

@available(iOS 27.0, *)
private extension NDArray {
    /// The elements as Float (float32 or float16 outputs), row-major.
    func floats() -> [Float] {
        let n = shape.reduce(1, *)
        if scalarType == .float16 {
            let v = view(as: Float16.self)
            return (0..<n).map { Float(v[$0]) }
        }
        let v = view(as: Float.self)
        return (0..<n).map { v[$0] }
    }
}
#endif

/// The Core AI classifier when the variant is installed as an `.aimodel` and the OS has Core AI, else nil.
func installedCoreAIClassifier(_ variant: ModelVariant) async throws -> FrameClassifier? {
    #if canImport(CoreAI)
    if #available(iOS 27.0, *) { return try await CoreAIClassifier.loadIfInstalled(variant) }
    #endif
    return nil
}
