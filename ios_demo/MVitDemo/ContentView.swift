import AVFoundation
import ClassifierCore
import PhotosUI
import SwiftUI
import UIKit

enum Mode: String, CaseIterable, Identifiable {
    case camera = "Camera"
    case photo = "Photo"
    case benchmark = "Benchmark"
    var id: String { rawValue }
}

/// The classifier the video queue uses, swapped by the main actor when a model finishes loading.
final class ClassifierBox: @unchecked Sendable {
    private let lock = NSLock()
    private var current: FrameClassifier?
    var value: FrameClassifier? {
        get { lock.lock(); defer { lock.unlock() }; return current }
        set { lock.lock(); current = newValue; lock.unlock() }
    }
}

struct Comparison {
    let float: [Classification]
    let int8: [Classification]
    let agreement: Agreement
}

@MainActor
final class ViewModel: ObservableObject {
    @Published var top: [Classification] = []
    @Published var lastMs: Double = .nan
    @Published var visionMs: Double = .nan
    @Published var averageMs: Double = .nan
    @Published var fps: Double = 0
    @Published var error: String?
    @Published var loading = false
    @Published var variant: ModelVariant = ModelVariant.allCases.first(where: \.isInstalled) ?? .float
    @Published var compute: ComputeChoice = .all
    @Published var mode: Mode = .camera
    @Published var authorization = CameraController.authorization
    @Published var photo: UIImage?
    @Published var comparison: Comparison?
    @Published var benchmarkStatus = ""
    @Published var benchmarkRows: [BenchmarkRow] = []
    @Published var benchmarkFile: URL?
    /// Why the camera shows no frames (interrupted, failed); nil while it runs.
    @Published var cameraStatus: String?
    @Published var benchmarkRunning = false

    let camera = CameraController()
    private let box = ClassifierBox()
    private var average = RollingAverage(window: 30)
    private var frameRate = FrameRate(window: 30)
    private let photoQueue = DispatchQueue(label: "mvit.photo", qos: .userInitiated)
    private var loadTask: Task<Void, Never>?

    init() {
        camera.onFrame = ViewModel.frameHandler(box: box) { [weak self] result in Task { @MainActor in self?.show(result) } }
        camera.onStatus = { [weak self] text in Task { @MainActor in self?.cameraStatus = text } }
        reload()
    }

    /// The video queue's frame handler, made outside the main actor: a closure formed in this
    /// `@MainActor` class would be isolated to the main actor in Swift 6 and trap when the video
    /// queue calls it. Runs synchronously there: AVFoundation drops the frames that arrive meanwhile.
    nonisolated static func frameHandler(box: ClassifierBox, deliver: @escaping @Sendable (Result<FrameResult, Error>) -> Void)
        -> @Sendable (CVPixelBuffer, CGImagePropertyOrientation) -> Void {
        { buffer, orientation in
            guard let classifier = box.value else { return }
            deliver(Result { try classifier.classify(pixelBuffer: buffer, orientation: orientation) })
        }
    }

    /// Loads the chosen model off the main thread; then re-runs the photo (and the comparison) if one is shown.
    func reload() {
        loadTask?.cancel()
        box.value = nil
        loading = true
        average.reset()
        frameRate.reset()
        let (variant, compute) = (self.variant, self.compute)
        loadTask = Task {
            do {
                // An installed .aimodel runs on Core AI (iOS 27, CoreAIClassifier.swift); else the .mlpackage on Core ML.
                let classifier: FrameClassifier
                if let coreAI = try await installedCoreAIClassifier(variant) {
                    classifier = coreAI
                } else {
                    classifier = Classifier(model: try await LoadedModel.load(variant, compute: compute))
                }
                guard !Task.isCancelled else { return }
                box.value = classifier
                error = nil
                loading = false
                if let photo { classify(photo: photo) }
                if comparison != nil { compare() }
            } catch {
                guard !Task.isCancelled else { return }
                loading = false
                self.error = "\(error)"
            }
        }
    }

    func setMode(_ m: Mode) {
        mode = m
        comparison = nil
        if m == .camera {
            photo = nil
            startCamera()
        } else {
            camera.stop() // no capture in photo or benchmark mode
        }
    }

    /// The app left or re-entered the foreground.
    func scene(active: Bool) {
        if active && mode == .camera { startCamera() } else { camera.stop() }
    }

    func startCamera() {
        switch CameraController.authorization {
        case .authorized:
            authorization = .authorized
            camera.start()
        case .notDetermined:
            CameraController.requestAccess { granted in
                Task { @MainActor in
                    self.authorization = granted ? .authorized : .denied
                    if granted && self.mode == .camera { self.camera.start() }
                }
            }
        case .denied:
            authorization = .denied
        }
    }

    func classify(photo image: UIImage) {
        photo = image
        mode = .photo
        camera.stop()
        guard let classifier = box.value, let cg = image.cgImage else { return }
        let orientation = CGImagePropertyOrientation(image.imageOrientation)
        photoQueue.async {
            let result = Result { try classifier.classify(cgImage: cg, orientation: orientation) }
            Task { @MainActor in self.show(result) }
        }
    }

    /// The float and the int8 model on the shown photo, with the chosen compute units.
    func compare() {
        guard let image = photo, let cg = image.cgImage else { return }
        let orientation = CGImagePropertyOrientation(image.imageOrientation)
        let compute = self.compute
        Task {
            do {
                var tops = [ModelVariant: [Classification]]()
                for v in ModelVariant.allCases {
                    let c = Classifier(model: try await LoadedModel.load(v, compute: compute))
                    tops[v] = try await withCheckedThrowingContinuation { cont in
                        photoQueue.async { cont.resume(with: Result { try c.classify(cgImage: cg, orientation: orientation).top }) }
                    }
                }
                let f = tops[.float] ?? [], q = tops[.int8] ?? []
                comparison = Comparison(float: f, int8: q, agreement: Agreement(f, q))
            } catch {
                self.error = "comparison failed: \(error)"
            }
        }
    }

    func runBenchmark() {
        benchmarkRows = []
        benchmarkFile = nil
        benchmarkStatus = "starting"
        benchmarkRunning = true
        Task {
            defer { benchmarkRunning = false }
            do {
                let (report, url) = try await BenchmarkRunner.run { text in Task { @MainActor in self.benchmarkStatus = text } }
                benchmarkRows = report.rows
                benchmarkFile = url
                benchmarkStatus = "done"
            } catch {
                benchmarkStatus = "failed"
                self.error = "benchmark failed: \(error)"
            }
        }
    }

    private func show(_ result: Result<FrameResult, Error>) {
        switch result {
        case .success(let r):
            top = r.top
            lastMs = r.totalMs
            visionMs = r.visionMs
            average.add(r.totalMs)
            averageMs = average.average
            frameRate.record(CACurrentMediaTime())
            fps = frameRate.fps
        case .failure(let e):
            error = "\(e)"
        }
    }
}

extension CGImagePropertyOrientation {
    init(_ o: UIImage.Orientation) {
        switch o {
        case .up: self = .up
        case .upMirrored: self = .upMirrored
        case .down: self = .down
        case .downMirrored: self = .downMirrored
        case .left: self = .left
        case .leftMirrored: self = .leftMirrored
        case .right: self = .right
        case .rightMirrored: self = .rightMirrored
        @unknown default: self = .up
        }
    }
}

struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }

    func makeUIView(context: Context) -> PreviewView {
        let v = PreviewView()
        v.previewLayer.session = session
        v.previewLayer.videoGravity = .resizeAspectFill
        return v
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}
}

struct ScoreRows: View {
    let top: [Classification]

    var body: some View {
        ForEach(top, id: \.index) { c in
            HStack {
                Text(c.label).frame(width: 100, alignment: .leading)
                ProgressView(value: min(max(c.score, 0), 1))
                Text(String(format: "%5.1f%%", c.score * 100)).monospacedDigit().frame(width: 64, alignment: .trailing)
            }
        }
    }
}

struct ContentView: View {
    @StateObject private var model = ViewModel()
    @State private var pickerItem: PhotosPickerItem?
    @Environment(\.scenePhase) private var scenePhase

    private func ms(_ v: Double) -> String { v.isNaN ? "–" : String(format: "%.1f", v) }

    var body: some View {
        VStack(spacing: 0) {
            Picker("Mode", selection: Binding(get: { model.mode }, set: { model.setMode($0) })) {
                ForEach(Mode.allCases) { Text($0.rawValue).tag($0) }
            }
            .pickerStyle(.segmented)
            .padding(.horizontal)
            ZStack {
                Color.black
                switch model.mode {
                case .benchmark:
                    benchmarkPanel
                case .photo:
                    if let photo = model.photo {
                        Image(uiImage: photo).resizable().scaledToFit()
                    } else {
                        PhotosPicker("Choose a photo…", selection: $pickerItem, matching: .images)
                    }
                case .camera:
                    switch model.authorization {
                    case .authorized:
                        CameraPreview(session: model.camera.session)
                    case .denied:
                        VStack(spacing: 12) {
                            Text("Camera access was denied. Allow it in Settings, or classify a photo.")
                                .multilineTextAlignment(.center).foregroundStyle(.white)
                            Button("Open Settings") {
                                if let url = URL(string: UIApplication.openSettingsURLString) { UIApplication.shared.open(url) }
                            }
                        }.padding()
                    case .notDetermined:
                        Text("Waiting for camera permission…").foregroundStyle(.white)
                    }
                }
            }
            VStack(alignment: .leading, spacing: 6) {
                if let error = model.error { Text(error).foregroundStyle(.red).font(.footnote) }
                if model.mode == .camera, let status = model.cameraStatus { Text(status).foregroundStyle(.orange).font(.footnote) }
                if model.loading { Text("loading the model…").font(.caption) }
                if model.mode != .benchmark {
                    if let cmp = model.comparison {
                        Text("float").font(.caption)
                        ScoreRows(top: cmp.float)
                        Text("int8").font(.caption)
                        ScoreRows(top: cmp.int8)
                        Text("\(cmp.agreement.top1Agrees ? "top-1 agrees" : "top-1 DIFFERS") · \(cmp.agreement.sharedTop3)/3 of the top-3 shared")
                            .font(.caption)
                    } else {
                        ScoreRows(top: model.top)
                    }
                    Text("frame \(ms(model.lastMs)) ms · Vision scale+model \(ms(model.visionMs)) ms · avg \(ms(model.averageMs)) ms · \(String(format: "%.1f", model.fps)) FPS")
                        .font(.caption).monospacedDigit()
                }
                Picker("Compute units", selection: $model.compute) {
                    ForEach(ComputeChoice.allCases) { Text($0.title).tag($0) }
                }
                .pickerStyle(.segmented)
                .onChange(of: model.compute) { model.reload() }
                Picker("Model", selection: $model.variant) {
                    ForEach(ModelVariant.allCases) { v in Text(v.title).tag(v) }
                }
                .pickerStyle(.segmented)
                .onChange(of: model.variant) { model.reload() }
                if model.mode == .photo {
                    HStack {
                        PhotosPicker("Photo…", selection: $pickerItem, matching: .images)
                        Button("Compare float / int8") { model.compare() }
                            .disabled(model.photo == nil || !ModelVariant.allCases.allSatisfy(\.isInstalled))
                    }
                }
            }
            .padding()
        }
        .onAppear { model.startCamera() }
        .onChange(of: scenePhase) { model.scene(active: scenePhase == .active) }
        .onChange(of: pickerItem) {
            Task {
                if let data = try? await pickerItem?.loadTransferable(type: Data.self), let image = UIImage(data: data) {
                    model.classify(photo: image)
                }
            }
        }
    }

    private var benchmarkPanel: some View {
        ScrollView {
            VStack(alignment: .leading, spacing: 8) {
                let plan = BenchmarkRunner.schedule
                Text("Fixed input (the shipped model's golden image): every model on every compute-unit choice, \(plan.runs) timed predictions each over \(plan.rounds) interleaved rounds, \(plan.cooldownMs / 1000) s cool-down between turns; only MLModel.prediction is timed. Each row's top-3 is checked against the golden record.")
                    .font(.caption).foregroundStyle(.white)
                Button("Run benchmark") { model.runBenchmark() }
                    .disabled(model.benchmarkRunning)
                Text(model.benchmarkStatus).font(.caption).foregroundStyle(.white)
                ForEach(Array(model.benchmarkRows.enumerated()), id: \.offset) { _, r in
                    VStack(alignment: .leading) {
                        Text("\(r.precision) · \(r.accelerator) → \(r.acceleratorUsed)\(r.failed ? " · FAILED golden check" : "")\(r.throttled == true ? " · throttled" : "")")
                            .font(.callout).foregroundStyle(r.failed ? .red : .white)
                        Text("thermal \(r.thermalBefore ?? "?") → \(r.thermalAfter ?? "?") · \(r.rounds ?? 1) rounds").font(.caption)
                        Text("median \(ms(r.latency.medianMs)) ms · p90 \(ms(r.latency.p90Ms)) ms · load \(ms(r.loadMs ?? .nan)) ms · first \(ms(r.firstMs ?? .nan)) ms")
                            .font(.caption).monospacedDigit()
                        Text((r.top3 ?? []).map { "\($0.label) \(String(format: "%.2f", $0.score))" }.joined(separator: "  ")).font(.caption)
                    }
                    .foregroundStyle(.white)
                }
                if let url = model.benchmarkFile {
                    ShareLink("Share \(url.lastPathComponent)", item: url)
                }
            }
            .padding()
        }
    }
}
