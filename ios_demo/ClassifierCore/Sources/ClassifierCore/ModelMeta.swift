import Foundation

/// A `model_meta.json` the app cannot use; the message names the field.
public struct MetaError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Interpolation: String, Codable { case nearest, bilinear, bicubic }
public enum ChannelOrder: String, Codable { case RGB, BGR }
public enum TensorLayout: String, Codable { case NCHW, NHWC }
public enum DType: String, Codable { case float32, float16, uint8, int8 }
public enum OutputKind: String, Codable { case logits, probabilities }

/// `real = (q - zeroPoint) * scale`
public struct QuantParams: Codable, Equatable {
    public let scale: Double
    public let zeroPoint: Int

    public init(scale: Double, zeroPoint: Int) {
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    enum CodingKeys: String, CodingKey {
        case scale
        case zeroPoint = "zero_point"
    }
}

/// The preprocessing contract (`preprocess` in model_meta.json; model/contract.py).
public struct PreprocessSpec: Codable, Equatable {
    public let inputSize: [Int]          // [H, W]
    public let cropFraction: Double
    public let resizeShort: Int
    public let interpolation: Interpolation
    public let scale: Double
    public let mean: [Double]
    public let std: [Double]
    public let channelOrder: ChannelOrder

    public var inputHeight: Int { inputSize[0] }
    public var inputWidth: Int { inputSize[1] }

    enum CodingKeys: String, CodingKey {
        case inputSize = "input_size"
        case cropFraction = "crop_fraction"
        case resizeShort = "resize_short"
        case interpolation, scale, mean, std
        case channelOrder = "channel_order"
    }

    /// `round(min(input_size) / crop_fraction)` exactly as model/contract.py computes it.
    public static func resizeShort(height: Int, width: Int, cropFraction: Double) -> Int {
        Int((Double(min(height, width)) / cropFraction + 0.5).rounded(.down))
    }

    public init(inputSize: [Int], cropFraction: Double = 1.0, resizeShort: Int? = nil,
                interpolation: Interpolation = .bilinear, scale: Double = 1.0 / 255.0,
                mean: [Double] = [0, 0, 0], std: [Double] = [1, 1, 1], channelOrder: ChannelOrder = .RGB) {
        self.inputSize = inputSize
        self.cropFraction = cropFraction
        self.resizeShort = resizeShort ?? PreprocessSpec.resizeShort(height: inputSize[0], width: inputSize[1], cropFraction: cropFraction)
        self.interpolation = interpolation
        self.scale = scale
        self.mean = mean
        self.std = std
        self.channelOrder = channelOrder
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let size = try c.decode([Int].self, forKey: .inputSize)
        guard size.count == 2, size[0] > 0, size[1] > 0 else { throw MetaError("preprocess.input_size must be [H, W] > 0") }
        let crop = try c.decodeIfPresent(Double.self, forKey: .cropFraction) ?? 1.0
        guard crop > 0, crop <= 1 else { throw MetaError("preprocess.crop_fraction must be in (0, 1]") }
        let mean = try c.decodeIfPresent([Double].self, forKey: .mean) ?? [0, 0, 0]
        let std = try c.decodeIfPresent([Double].self, forKey: .std) ?? [1, 1, 1]
        guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw MetaError("preprocess.mean and std need 3 values, std > 0")
        }
        let interp = try c.decodeIfPresent(String.self, forKey: .interpolation) ?? "bilinear"
        guard let interpolation = Interpolation(rawValue: interp.lowercased()) else {
            throw MetaError("preprocess.interpolation '\(interp)' is not nearest/bilinear/bicubic")
        }
        let order = try c.decodeIfPresent(String.self, forKey: .channelOrder) ?? "RGB"
        guard let channelOrder = ChannelOrder(rawValue: order.uppercased()) else {
            throw MetaError("preprocess.channel_order '\(order)' is not RGB/BGR")
        }
        self.init(inputSize: size, cropFraction: crop,
                  resizeShort: try c.decodeIfPresent(Int.self, forKey: .resizeShort),
                  interpolation: interpolation,
                  scale: try c.decodeIfPresent(Double.self, forKey: .scale) ?? 1.0 / 255.0,
                  mean: mean, std: std, channelOrder: channelOrder)
    }
}

public struct InputSpec: Codable, Equatable {
    public let name: String?
    public let shape: [Int]
    public let layout: TensorLayout
    public let dtype: DType
    public let quantization: QuantParams?
    public let normalizationInModel: Bool?

    enum CodingKeys: String, CodingKey {
        case name, shape, layout, dtype, quantization
        case normalizationInModel = "normalization_in_model"
    }
}

public struct OutputSpec: Codable, Equatable {
    public let name: String?
    public let shape: [Int]
    public let dtype: DType
    public let quantization: QuantParams?
    public let kind: OutputKind?
}

/// Everything the app reads from `model_meta.json` (schema `mvit.model_meta/1`).
public struct ModelMeta: Codable, Equatable {
    public static let schemaID = "mvit.model_meta/1"

    public let schema: String
    public let architecture: String?
    public let numClasses: Int?
    public let labels: [String]
    public let preprocess: PreprocessSpec
    public let input: InputSpec
    public let output: OutputSpec
    public let format: String?
    public let precision: String?

    enum CodingKeys: String, CodingKey {
        case schema, architecture, labels, preprocess, input, output, format, precision
        case numClasses = "num_classes"
    }

    public var outputKind: OutputKind { output.kind ?? .logits }

    public static func parse(_ data: Data) throws -> ModelMeta {
        let meta: ModelMeta
        do {
            meta = try JSONDecoder().decode(ModelMeta.self, from: data)
        } catch let e as MetaError {
            throw e
        } catch {
            throw MetaError("model_meta.json is not valid: \(error)")
        }
        try meta.validate()
        return meta
    }

    public func validate() throws {
        guard schema.hasPrefix("mvit.model_meta/") else { throw MetaError("unknown schema '\(schema)'") }
        guard schema == ModelMeta.schemaID else { throw MetaError("schema '\(schema)' is newer than this app") }
        guard !labels.isEmpty else { throw MetaError("labels must not be empty") }
        if let n = numClasses, n != labels.count { throw MetaError("num_classes \(n) != \(labels.count) labels") }
        guard input.shape.count == 4, input.shape[0] == 1 else { throw MetaError("input.shape must be [1, ., ., .]") }
        let (c, h, w) = input.layout == .NCHW ? (input.shape[1], input.shape[2], input.shape[3])
                                              : (input.shape[3], input.shape[1], input.shape[2])
        guard c == 3 else { throw MetaError("input has \(c) channels, expected 3") }
        guard h == preprocess.inputHeight, w == preprocess.inputWidth else {
            throw MetaError("input.shape \(input.shape) does not match preprocess.input_size \(preprocess.inputSize)")
        }
        if (input.dtype == .int8 || input.dtype == .uint8), input.quantization == nil, input.normalizationInModel != true {
            throw MetaError("input.dtype \(input.dtype.rawValue) needs input.quantization")
        }
        if (output.dtype == .int8 || output.dtype == .uint8), output.quantization == nil {
            throw MetaError("output.dtype \(output.dtype.rawValue) needs output.quantization")
        }
        guard output.shape.reduce(1, *) == labels.count else {
            throw MetaError("output.shape \(output.shape) does not hold \(labels.count) classes")
        }
    }
}

/// `labels.txt`: one label per line in class-index order.
public enum Labels {
    public static func parse(_ text: String) -> [String] {
        var lines = text.replacingOccurrences(of: "\r\n", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        return lines
    }

    /// labels.txt when present and consistent with the metadata, else the metadata's labels.
    public static func resolve(meta: ModelMeta, labelsText: String?) throws -> [String] {
        guard let text = labelsText else { return meta.labels }
        let l = parse(text)
        guard l.count == meta.labels.count else {
            throw MetaError("labels.txt has \(l.count) labels, model_meta.json \(meta.labels.count)")
        }
        return l
    }
}
