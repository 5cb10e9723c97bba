import Foundation

/// The recorded top-3 of an installed model on the benchmark's golden image, from
/// `shipped_models.json` (written by `python -m mvit.export.apps.fixtures --shipped`, bundled in the app).
public struct GoldenRecord: Equatable {
    public let expected: [String]
    /// How many leading labels are compared: all, unless the record has a near-tie.
    public let checked: Int

    /// Adjacent recorded probabilities closer than this may swap on another compute unit.
    public static let tieMargin = 0.01

    public init(expected: [String], checked: Int) {
        precondition((1...3).contains(expected.count) && (1...expected.count).contains(checked), "1 to 3 labels, 1 to that many checked")
        self.expected = expected
        self.checked = checked
    }

    /// Checks a row's top-3 labels.
    public func check(_ got: [String]) -> GoldenCheck {
        GoldenCheck(expected: expected, checked: checked, passed: Array(got.prefix(checked)) == Array(expected.prefix(checked)))
    }

    /// The record of the model whose `field` (`artifact_sha256` or `meta_sha256`) is `sha256`, on `image`.
    public static func find(in shippedJSON: Data, field: String, sha256: String, image: String) throws -> GoldenRecord {
        guard let doc = try? JSONSerialization.jsonObject(with: shippedJSON) as? [String: Any],
              let models = doc["models"] as? [[String: Any]] else { throw MetaError("shipped_models.json is not a record of models") }
        guard let model = models.first(where: { $0[field] as? String == sha256 }) else {
            throw MetaError("shipped_models.json records no model with \(field) \(sha256): run python -m mvit.export.apps.fixtures --shipped")
        }
        guard let c = (model["cases"] as? [[String: Any]])?.first(where: { $0["image"] as? String == image }),
              let top = c["top3"] as? [[String: Any]], let scores = c["scores"] as? [NSNumber] else {
            throw MetaError("shipped_models.json records no case of \(model["artifact"] ?? "?") on \(image)")
        }
        let labels = top.compactMap { $0["label"] as? String }
        let s = scores.map(\.doubleValue).sorted(by: >)
        var settled = labels.count
        if (c["stable_top3"] as? Bool) != true,
           let i = (0..<labels.count).first(where: { $0 + 1 < s.count && s[$0] - s[$0 + 1] < tieMargin }) {
            settled = i
        }
        guard settled > 0 else { throw MetaError("shipped_models.json: the recorded top-1 on \(image) is a near-tie") }
        return GoldenRecord(expected: labels, checked: settled)
    }
}

/// A row's golden check: the benchmark JSON's `golden` object.
public struct GoldenCheck: Codable, Equatable, Sendable {
    public let expected: [String]
    public let checked: Int
    public let passed: Bool
}
