import Foundation

/// A platform's thermal levels in rising order and the first level it throttles at; rows measured
/// at or above it are marked `throttled`.
public struct ThermalScale: Equatable, Sendable {
    public let names: [String]
    public let throttledFrom: Int

    public init(names: [String], throttledFrom: Int) {
        precondition(names.indices.contains(throttledFrom), "throttledFrom must name one of \(names)")
        self.names = names
        self.throttledFrom = throttledFrom
    }

    /// The name of `level` (`thermal_before` / `thermal_after` in the benchmark JSON).
    public func name(_ level: Int) -> String { names[level] }

    /// Whether the platform throttles at `level`.
    public func throttles(_ level: Int) -> Bool { level >= throttledFrom }

    /// `ProcessInfo.ThermalState` raw values: nominal 0, fair 1, serious 2, critical 3. Apple's
    /// guidance reduces work from `serious` on; `fair` is only "slightly elevated".
    public static let iOS = ThermalScale(names: ["nominal", "fair", "serious", "critical"], throttledFrom: 2)
}

/// `runs` timed inferences per configuration spread over `rounds` rounds; within a round the
/// configurations take turns (the order rotates each round) with `cooldownMs` between turns. A
/// configuration's first turn starts with its cold first inference and `max(warmup, 1) - 1` untimed
/// ones, later turns with `rewarm` untimed ones (the others ran in between).
public struct RoundPlan: Equatable, Sendable {
    public let rounds: Int
    public let runs: Int
    public let warmup: Int
    public let cooldownMs: Int
    public let rewarm: Int

    public init(rounds: Int, runs: Int, warmup: Int, cooldownMs: Int, rewarm: Int = 2) {
        precondition(rounds >= 1 && runs >= rounds, "rounds >= 1 and at least one run per round")
        precondition(warmup >= 0 && rewarm >= 0 && cooldownMs >= 0, "warmup, rewarm and cooldownMs must be >= 0")
        self.rounds = rounds
        self.runs = runs
        self.warmup = warmup
        self.cooldownMs = cooldownMs
        self.rewarm = rewarm
    }

    /// Timed runs in `round` (0-based): `runs` split as evenly as possible, earlier rounds first.
    public func runs(in round: Int) -> Int { runs / rounds + (round < runs % rounds ? 1 : 0) }

    /// The turn order of `configs` configurations in `round`: rotated by the round.
    public func order(round: Int, configs: Int) -> [Int] { (0..<configs).map { ($0 + round) % configs } }
}

/// One configuration's result over all rounds; thermal fields are nil without a thermal sensor.
public struct RoundsResult: Equatable, Sendable {
    public let firstMs: Double
    public let latency: LatencyStats
    public let rounds: Int
    public let thermalBefore: Int?
    public let thermalAfter: Int?
    public let throttled: Bool?
}

/// Runs a `RoundPlan`; clock, thermal sensor and pause are injected so tests control them.
public enum InterleavedBenchmark {
    /// Times `inference(config)` for `configs` configurations, interleaved as `plan` says; `turn`
    /// hears `(config, round)` before each turn. One result per configuration, in index order.
    public static func run(configs: Int, plan: RoundPlan, scale: ThermalScale, clock: () -> UInt64, thermal: (() -> Int)?,
                           pause: (Int) -> Void, turn: (Int, Int) -> Void = { _, _ in },
                           inference: (Int) throws -> Void) rethrows -> [RoundsResult] {
        precondition(configs >= 1, "no configurations")
        var samples = [[Double]](repeating: [], count: configs)
        var first = [Double](repeating: 0, count: configs)
        var readings = [[(Int, Int)]](repeating: [], count: configs)
        var turns = 0
        for round in 0..<plan.rounds {
            for c in plan.order(round: round, configs: configs) {
                if turns > 0 && plan.cooldownMs > 0 { pause(plan.cooldownMs) }
                turns += 1
                turn(c, round)
                let before = thermal?()
                if round == 0 {
                    let t0 = clock()
                    try inference(c)
                    first[c] = Double(clock() - t0) / 1e6
                    for _ in 0..<max(plan.warmup - 1, 0) { try inference(c) }
                } else {
                    for _ in 0..<plan.rewarm { try inference(c) }
                }
                for _ in 0..<plan.runs(in: round) {
                    let a = clock()
                    try inference(c)
                    samples[c].append(Double(clock() - a) / 1e6)
                }
                if let before, let thermal { readings[c].append((before, thermal())) }
            }
        }
        return (0..<configs).map { c in
            let r = readings[c]
            return RoundsResult(firstMs: first[c], latency: LatencyStats.of(samples[c], warmup: max(plan.warmup, 1)), rounds: plan.rounds,
                                thermalBefore: r.first?.0, thermalAfter: r.last?.1,
                                throttled: r.isEmpty ? nil : r.contains { scale.throttles($0.0) || scale.throttles($0.1) })
        }
    }
}
