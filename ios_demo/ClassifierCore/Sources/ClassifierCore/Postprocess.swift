import Foundation

public struct Classification: Equatable, Sendable {
    public let index: Int
    public let label: String
    public let score: Double

    public init(index: Int, label: String, score: Double) {
        self.index = index
        self.label = label
        self.score = score
    }
}

public enum Postprocess {
    /// `real = (q - zero_point) * scale` in Float32; values are int8 or uint8 per `dtype`.
    public static func dequantize(_ values: [Int], params: QuantParams) -> [Float] {
        let s = Float(params.scale)
        let z = Float(params.zeroPoint)
        return values.map { (Float($0) - z) * s }
    }

    /// `q = clamp(round_half_even(v / scale) + zero_point)` (for int8/uint8 inputs).
    public static func quantize(_ v: Float, params: QuantParams, dtype: DType) -> Int {
        let r = Double((v / Float(params.scale))).rounded(.toNearestOrEven) + Double(params.zeroPoint)
        let (lo, hi): (Double, Double) = dtype == .int8 ? (-128, 127) : (0, 255)
        return Int(min(max(r, lo), hi))
    }

    /// Numerically stable softmax in double precision.
    public static func softmax(_ x: [Float]) -> [Double] {
        guard let m = x.max() else { return [] }
        let e = x.map { exp(Double($0) - Double(m)) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    public static func scores(_ output: [Float], kind: OutputKind) -> [Double] {
        kind == .logits ? softmax(output) : output.map(Double.init)
    }

    /// Indices of the k largest scores, descending; ties go to the lower index.
    public static func topK(_ scores: [Double], k: Int) -> [Int] {
        let order = scores.indices.sorted { a, b in
            scores[a] != scores[b] ? scores[a] > scores[b] : a < b
        }
        return Array(order.prefix(k))
    }

    public static func classify(_ output: [Float], kind: OutputKind, labels: [String], k: Int = 3) -> [Classification] {
        precondition(output.count == labels.count, "model returned \(output.count) scores for \(labels.count) labels")
        let s = scores(output, kind: kind)
        return topK(s, k: k).map { Classification(index: $0, label: labels[$0], score: s[$0]) }
    }
}

/// Rolling average over the last `window` values (milliseconds).
public struct RollingAverage {
    public let window: Int
    private var values: [Double]
    private var next = 0
    public private(set) var count = 0
    private var sum = 0.0
    public private(set) var last = Double.nan

    public init(window: Int = 30) {
        precondition(window > 0)
        self.window = window
        values = Array(repeating: 0, count: window)
    }

    public mutating func add(_ v: Double) {
        if count == window { sum -= values[next] } else { count += 1 }
        values[next] = v
        sum += v
        next = (next + 1) % window
        last = v
    }

    public var average: Double { count == 0 ? .nan : sum / Double(count) }

    public mutating func reset() {
        next = 0
        count = 0
        sum = 0
        last = .nan
    }
}
