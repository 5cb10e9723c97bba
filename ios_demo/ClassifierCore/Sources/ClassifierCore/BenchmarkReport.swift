import Foundation

/// Warm-run latency statistics as `mvit-bench` defines them: `runs` timed inferences after `warmup`
/// untimed ones; median and p90 interpolate linearly between sorted samples (numpy's percentile).
public struct LatencyStats: Codable, Equatable, Sendable {
    public let runs: Int
    public let warmup: Int
    public let medianMs: Double
    public let p90Ms: Double
    public let minMs: Double
    public let meanMs: Double

    enum CodingKeys: String, CodingKey {
        case runs, warmup
        case medianMs = "median_ms"
        case p90Ms = "p90_ms"
        case minMs = "min_ms"
        case meanMs = "mean_ms"
    }

    public init(runs: Int, warmup: Int, medianMs: Double, p90Ms: Double, minMs: Double, meanMs: Double) {
        self.runs = runs
        self.warmup = warmup
        self.medianMs = medianMs
        self.p90Ms = p90Ms
        self.minMs = minMs
        self.meanMs = meanMs
    }

    /// Statistics of `samplesMs` (at least one).
    public static func of(_ samplesMs: [Double], warmup: Int) -> LatencyStats {
        precondition(!samplesMs.isEmpty, "no timed runs")
        let s = samplesMs.sorted()
        return LatencyStats(runs: s.count, warmup: warmup, medianMs: percentile(s, 50), p90Ms: percentile(s, 90),
                            minMs: s[0], meanMs: s.reduce(0, +) / Double(s.count))
    }

    /// Linear-interpolation percentile of sorted values.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        let pos = q / 100 * Double(sorted.count - 1)
        let lo = Int(pos)
        let hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }
}

/// Times an inference as the benchmark mode does: the first call is the cold `first_ms`, then
/// `max(warmup, 1) - 1` more untimed calls, then `runs` timed calls. Only `inference` is timed.
public enum Benchmark {
    public static func measure(warmup: Int, runs: Int, clock: () -> UInt64, inference: () throws -> Void) rethrows -> (firstMs: Double, latency: LatencyStats) {
        precondition(warmup >= 0 && runs >= 1, "warmup >= 0 and runs >= 1")
        let t0 = clock()
        try inference()
        let firstMs = Double(clock() - t0) / 1e6
        for _ in 1..<max(warmup, 1) { try inference() }
        var samples = [Double]()
        samples.reserveCapacity(runs)
        for _ in 0..<runs {
            let a = clock()
            try inference()
            samples.append(Double(clock() - a) / 1e6)
        }
        return (firstMs, LatencyStats.of(samples, warmup: max(warmup, 1)))
    }
}

/// The phone that measured (docs/device_results.md `device`).
public struct DeviceInfo: Codable, Equatable {
    public let manufacturer: String
    public let model: String
    public let soc: String?
    public let os: String
    public let osVersion: String
    public let abi: String?

    enum CodingKeys: String, CodingKey {
        case manufacturer, model, soc, os, abi
        case osVersion = "os_version"
    }

    public init(manufacturer: String, model: String, soc: String?, os: String, osVersion: String, abi: String?) {
        self.manufacturer = manufacturer
        self.model = model
        self.soc = soc
        self.os = os
        self.osVersion = osVersion
        self.abi = abi
    }

    public func encode(to encoder: Encoder) throws { // nulls are written, not left out
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(manufacturer, forKey: .manufacturer)
        try c.encode(model, forKey: .model)
        try c.encode(soc, forKey: .soc)
        try c.encode(os, forKey: .os)
        try c.encode(osVersion, forKey: .osVersion)
        try c.encode(abi, forKey: .abi)
    }
}

public struct ScoredLabel: Codable, Equatable {
    public let label: String
    public let score: Double

    public init(label: String, score: Double) {
        self.label = label
        self.score = score
    }
}

/// One latency row: one artifact on one compute-unit choice (docs/device_results.md `rows[]`).
public struct BenchmarkRow: Codable, Equatable {
    public let model: String
    public let artifact: String
    public let artifactSha256: String?
    public let format: String
    public let precision: String
    public let accelerator: String
    public let acceleratorUsed: String
    public let threads: Int?
    public let latency: LatencyStats
    public let loadMs: Double?
    public let firstMs: Double?
    public let top3: [ScoredLabel]?
    public let note: String
    /// Rounds the timed runs were spread over (`RoundPlan`).
    public let rounds: Int?
    /// `ThermalScale.iOS` names before the row's first turn and after its last.
    public let thermalBefore: String?
    public let thermalAfter: String?
    public let throttled: Bool?
    /// The top-3 against the golden record; `passed == false` marks the row failed.
    public let golden: GoldenCheck?

    enum CodingKeys: String, CodingKey {
        case model, artifact, format, precision, accelerator, threads, latency, top3, note, rounds, throttled, golden
        case artifactSha256 = "artifact_sha256"
        case acceleratorUsed = "accelerator_used"
        case loadMs = "load_ms"
        case firstMs = "first_ms"
        case thermalBefore = "thermal_before"
        case thermalAfter = "thermal_after"
    }

    /// False when the timed model no longer gives the recorded top-3 on the golden image.
    public var failed: Bool { golden?.passed == false }

    public init(model: String, artifact: String, artifactSha256: String?, format: String, precision: String, accelerator: String,
                acceleratorUsed: String, threads: Int?, latency: LatencyStats, loadMs: Double?, firstMs: Double?,
                top3: [ScoredLabel]?, note: String, rounds: Int? = nil, thermalBefore: String? = nil, thermalAfter: String? = nil,
                throttled: Bool? = nil, golden: GoldenCheck? = nil) {
        self.model = model
        self.artifact = artifact
        self.artifactSha256 = artifactSha256
        self.format = format
        self.precision = precision
        self.accelerator = accelerator
        self.acceleratorUsed = acceleratorUsed
        self.threads = threads
        self.latency = latency
        self.loadMs = loadMs
        self.firstMs = firstMs
        self.top3 = top3
        self.note = note
        self.rounds = rounds
        self.thermalBefore = thermalBefore
        self.thermalAfter = thermalAfter
        self.throttled = throttled
        self.golden = golden
    }

    public func encode(to encoder: Encoder) throws { // nulls are written, not left out
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(artifact, forKey: .artifact)
        try c.encode(artifactSha256, forKey: .artifactSha256)
        try c.encode(format, forKey: .format)
        try c.encode(precision, forKey: .precision)
        try c.encode(accelerator, forKey: .accelerator)
        try c.encode(acceleratorUsed, forKey: .acceleratorUsed)
        try c.encode(threads, forKey: .threads)
        try c.encode(latency, forKey: .latency)
        try c.encode(loadMs, forKey: .loadMs)
        try c.encode(firstMs, forKey: .firstMs)
        try c.encode(top3, forKey: .top3)
        try c.encode(note, forKey: .note)
        try c.encode(rounds, forKey: .rounds)
        try c.encode(thermalBefore, forKey: .thermalBefore)
        try c.encode(thermalAfter, forKey: .thermalAfter)
        try c.encode(throttled, forKey: .throttled)
        try c.encode(golden, forKey: .golden)
    }
}

/// A benchmark run of the app as schema `mvit.device_results/1`: the file `mvit-bench --device-results` reads.
public struct BenchmarkReport: Codable, Equatable {
    public static let schemaID = "mvit.device_results/1"
    public static let computeUnits = ["cpu_only", "cpu_and_gpu", "cpu_and_ne", "all"]
    /// `accelerator_used` may also be `unknown`: no `MLComputePlan` before iOS 17.4.
    public static let computeUnitsUsed = computeUnits + ["unknown"]

    public let schema: String
    public let created: String
    public let source: String
    public let device: DeviceInfo
    public let rows: [BenchmarkRow]

    public init(created: Date, device: DeviceInfo, rows: [BenchmarkRow]) {
        schema = BenchmarkReport.schemaID
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        self.created = f.string(from: created)
        source = "ios-app"
        self.device = device
        self.rows = rows
    }

    /// Why this report breaks the schema's rules (empty when it is valid).
    public var problems: [String] {
        var p = [String]()
        if rows.isEmpty { p.append("rows must not be empty") }
        for (i, r) in rows.enumerated() {
            let l = r.latency
            if l.runs < 1 || l.warmup < 0 { p.append("rows[\(i)].latency: runs >= 1 and warmup >= 0") }
            if ![l.medianMs, l.p90Ms, l.minMs, l.meanMs].allSatisfy({ $0.isFinite && $0 > 0 }) { p.append("rows[\(i)].latency: times must be > 0") }
            if !(l.minMs <= l.medianMs && l.medianMs <= l.p90Ms) { p.append("rows[\(i)].latency: min_ms <= median_ms <= p90_ms") }
            if !BenchmarkReport.computeUnits.contains(r.accelerator) || !BenchmarkReport.computeUnitsUsed.contains(r.acceleratorUsed) {
                p.append("rows[\(i)]: accelerator must be one of \(BenchmarkReport.computeUnits), accelerator_used also unknown")
            }
            if let t = r.top3, t.isEmpty || t.count > 3 { p.append("rows[\(i)].top3: 1 to 3 labels or null") }
            if let n = r.rounds, n < 1 { p.append("rows[\(i)].rounds: >= 1 or null") }
            if [r.thermalBefore, r.thermalAfter].contains(where: { $0?.isEmpty == true }) { p.append("rows[\(i)]: thermal states must be non-empty or null") }
            if let g = r.golden, !(1...3).contains(g.expected.count) || !(1...g.expected.count).contains(g.checked) {
                p.append("rows[\(i)].golden: 1 to 3 expected labels, 1 to that many checked")
            }
        }
        return p
    }

    /// The JSON text; refuses a report with problems.
    public func json() throws -> Data {
        guard problems.isEmpty else { throw MetaError("benchmark report breaks \(BenchmarkReport.schemaID): \(problems.joined(separator: "; "))") }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// Writes atomically (Foundation writes a temporary file, then renames).
    public func write(to url: URL) throws {
        try json().write(to: url, options: .atomic)
    }
}

/// Whether two models agree on one input: same top-1, and how many of the top-3 they share.
public struct Agreement: Equatable {
    public let top1Agrees: Bool
    public let sharedTop3: Int

    public init(_ a: [Classification], _ b: [Classification]) {
        top1Agrees = a.first?.index == b.first?.index && !a.isEmpty
        sharedTop3 = Set(a.prefix(3).map(\.index)).intersection(b.prefix(3).map(\.index)).count
    }
}

/// Frames per second over the last `window` frame end times (seconds, monotonic).
public struct FrameRate {
    private var stamps: [Double] = []
    public let window: Int

    public init(window: Int = 30) {
        precondition(window > 1)
        self.window = window
    }

    public mutating func record(_ t: Double) {
        stamps.append(t)
        if stamps.count > window { stamps.removeFirst(stamps.count - window) }
    }

    public var fps: Double {
        guard stamps.count >= 2, let first = stamps.first, let last = stamps.last, last > first else { return 0 }
        return Double(stamps.count - 1) / (last - first)
    }

    public mutating func reset() { stamps.removeAll() }
}
