import Foundation

/// The compute devices `MLComputePlan` (iOS 17.4+) prefers for a model's operations.
public enum ComputeDeviceKind: String, CaseIterable, Sendable {
    case cpu, gpu
    case neuralEngine = "neural_engine"
}

/// Operations per preferred compute device, and the compute units that cover them.
public struct ComputePlanSummary: Equatable, Sendable {
    public let operations: [ComputeDeviceKind: Int]

    public init(operations: [ComputeDeviceKind: Int]) { self.operations = operations.filter { $0.value > 0 } }

    /// The smallest `MLComputeUnits` choice (`accelerator_used` vocabulary) that holds every device
    /// used: CPU alone `cpu_only`, with the GPU `cpu_and_gpu`, with the Neural Engine `cpu_and_ne`,
    /// both `all`; `unknown` when the plan assigned nothing.
    public var computeUnits: String {
        let gpu = operations[.gpu] != nil, ne = operations[.neuralEngine] != nil
        switch (gpu, ne) {
        case (true, true): return "all"
        case (true, false): return "cpu_and_gpu"
        case (false, true): return "cpu_and_ne"
        case (false, false): return operations.isEmpty ? "unknown" : "cpu_only"
        }
    }

    /// e.g. `MLComputePlan: 3 ops on the CPU, 118 ops on the Neural Engine`.
    public var note: String {
        let names: [ComputeDeviceKind: String] = [.cpu: "the CPU", .gpu: "the GPU", .neuralEngine: "the Neural Engine"]
        let parts = ComputeDeviceKind.allCases.compactMap { k in operations[k].map { "\($0) ops on \(names[k]!)" } }
        return parts.isEmpty ? "MLComputePlan assigned no operations" : "MLComputePlan: " + parts.joined(separator: ", ")
    }
}

/// sha256 of a model folder (`.mlpackage`, `.mlmodelc`) as mvit.export.apps.fixtures computes it: over the
/// lines `relative/path\0<sha256 of the file>\n`, sorted by path components, hidden files left out.
/// `digest` is the lower-case hex sha256 of some bytes (CryptoKit in the app: the core imports only Foundation).
public enum FolderHash {
    /// The hash of `files` (relative path with `/` separators, contents).
    public static func sha256(_ files: [(path: String, data: Data)], digest: (Data) -> String) -> String {
        let parts = { (p: String) in p.split(separator: "/").map(String.init) }
        let visible = files.filter { !parts($0.path).contains { $0.hasPrefix(".") } }
        var text = Data()
        for f in visible.sorted(by: { parts($0.path).lexicographicallyPrecedes(parts($1.path)) }) {
            text.append(contentsOf: Array(f.path.utf8) + [0] + Array(digest(f.data).utf8) + [10])
        }
        return digest(text)
    }

    /// The hash of every regular file under `folder`.
    public static func sha256(folder: URL, digest: (Data) -> String) throws -> String {
        let root = folder.standardizedFileURL.path
        var files = [(path: String, data: Data)]()
        let e = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = e?.nextObject() as? URL {
            guard try url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true else { continue }
            files.append((String(url.standardizedFileURL.path.dropFirst(root.count + 1)), try Data(contentsOf: url)))
        }
        return sha256(files, digest: digest)
    }
}
