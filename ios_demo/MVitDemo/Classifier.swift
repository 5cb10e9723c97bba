import ClassifierCore
import CoreML
import CoreVideo
import Foundation
import ImageIO
import Vision

struct FrameResult: Sendable {
    let top: [Classification]
    /// Vision's `perform`: its scaling of the crop into the model input *and* the model. The model
    /// alone is what the benchmark mode times (BenchmarkRunner).
    let visionMs: Double
    let totalMs: Double
}

/// Runs one Vision `VNCoreMLRequest`, made once (as Apple's Vision + Core ML sample does), on the
/// model's crop of a frame. Vision scales exactly the region the contract keeps (resize short side,
/// centre crop) into the model's image input; the model's own image-input scale/bias does the
/// normalisation (Core ML export, `normalization_in_model`). The crop depends on the frame size, so
/// the region of interest is set again only when the size changes. The request is mutable: a lock
/// keeps the video queue and the photo queue from using it at once.
final class Classifier: @unchecked Sendable {
    let model: LoadedModel
    private let request: VNCoreMLRequest
    private let lock = NSLock()
    private var roiSize: (width: Int, height: Int)?

    init(model: LoadedModel) {
        self.model = model
        request = VNCoreMLRequest(model: model.vnModel)
        request.imageCropAndScaleOption = .scaleFill
    }

    /// Points the request at the contract's crop of a `width x height` upright image.
    private func setRegion(width: Int, height: Int) {
        if let s = roiSize, s.width == width, s.height == height { return }
        let roi = CropGeometry.of(width: width, height: height, spec: model.meta.preprocess).visionRegionOfInterest
        request.regionOfInterest = CGRect(x: roi.x, y: roi.y, width: roi.width, height: roi.height)
        roiSize = (width, height)
    }

    /// Upright size of a buffer shown with `orientation`.
    private static func uprightSize(width: Int, height: Int, orientation: CGImagePropertyOrientation) -> (Int, Int) {
        let r = Orientation.exif(Int(orientation.rawValue))
        return Orientation.rotatedSize(width: width, height: height, degrees: r.degrees)
    }

    func classify(pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) throws -> FrameResult {
        let (w, h) = Classifier.uprightSize(width: CVPixelBufferGetWidth(pixelBuffer), height: CVPixelBufferGetHeight(pixelBuffer), orientation: orientation)
        let handler = VNImageRequestHandler(cvPixelBuffer: pixelBuffer, orientation: orientation, options: [:])
        return try perform(handler: handler, width: w, height: h)
    }

    func classify(cgImage: CGImage, orientation: CGImagePropertyOrientation) throws -> FrameResult {
        let (w, h) = Classifier.uprightSize(width: cgImage.width, height: cgImage.height, orientation: orientation)
        let handler = VNImageRequestHandler(cgImage: cgImage, orientation: orientation, options: [:])
        return try perform(handler: handler, width: w, height: h)
    }

    private func perform(handler: VNImageRequestHandler, width: Int, height: Int) throws -> FrameResult {
        lock.lock()
        defer { lock.unlock() }
        let start = CFAbsoluteTimeGetCurrent()
        setRegion(width: width, height: height)
        let t0 = CFAbsoluteTimeGetCurrent()
        try handler.perform([request])
        let t1 = CFAbsoluteTimeGetCurrent()
        let scores = try Classifier.scores(from: request.results ?? [], meta: model.meta)
        let top = Postprocess.classify(scores, kind: model.meta.outputKind, labels: model.labels, k: 3)
        let end = CFAbsoluteTimeGetCurrent()
        return FrameResult(top: top, visionMs: (t1 - t0) * 1000, totalMs: (end - start) * 1000)
    }

    /// The model output as floats, whatever Vision returned (a classifier or a raw multi-array).
    static func scores(from results: [VNObservation], meta: ModelMeta) throws -> [Float] {
        if let obs = results as? [VNCoreMLFeatureValueObservation], let array = obs.first?.featureValue.multiArrayValue {
            return scores(from: array, meta: meta)
        }
        if let obs = results as? [VNClassificationObservation], !obs.isEmpty {
            // A Core ML classifier already returns probabilities keyed by label.
            let byLabel = Dictionary(obs.map { ($0.identifier, Float($0.confidence)) }, uniquingKeysWith: { a, _ in a })
            return meta.labels.map { byLabel[$0] ?? 0 }
        }
        throw MetaError("the model returned no usable output")
    }

    /// A raw output array as floats, dequantised when the metadata says it is int8/uint8.
    static func scores(from array: MLMultiArray, meta: ModelMeta) -> [Float] {
        var out = [Float](repeating: 0, count: array.count)
        for i in 0..<array.count { out[i] = array[i].floatValue }
        if let q = meta.output.quantization, meta.output.dtype == .int8 || meta.output.dtype == .uint8 {
            return Postprocess.dequantize(out.map { Int($0) }, params: q)
        }
        return out
    }
}
