import AVFoundation
import ClassifierCore
import PhotosUI
import SwiftUI
import UIKit

@MainActor
final class ViewModel: ObservableObject {
    @Published var top: [Classification] = []
    @Published var lastMs: Double = .nan
    @Published var inferenceMs: Double = .nan
    @Published var averageMs: Double = .nan
    @Published var error: String?
    @Published var variant: ModelVariant = ModelVariant.allCases.first(where: \.isInstalled) ?? .float
    @Published var compute: ComputeChoice = .all
    @Published var authorization = CameraController.authorization
    @Published var photo: UIImage?

    let camera = CameraController()
    private var classifier: Classifier?
    private var average = RollingAverage(window: 30)
    private let inferenceQueue = DispatchQueue(label: "mvit.inference")
    private var busy = false

    init() {
        reload()
        camera.onFrame = { [weak self] buffer, orientation in
            self?.handle(buffer: buffer, orientation: orientation)
        }
    }

    func reload() {
        do {
            classifier = Classifier(model: try LoadedModel.load(variant, compute: compute))
            error = nil
        } catch {
            classifier = nil
            self.error = "\(error)"
        }
        average.reset()
    }

    func startCamera() {
        switch CameraController.authorization {
        case .authorized:
            authorization = .authorized
            camera.start()
        case .notDetermined:
            CameraController.requestAccess { granted in
                self.authorization = granted ? .authorized : .denied
                if granted { self.camera.start() }
            }
        case .denied:
            authorization = .denied
        }
    }

    /// Runs on the camera's video queue; drops the frame while the previous one is still running.
    nonisolated private func handle(buffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) {
        Task { @MainActor in
            guard self.photo == nil, !self.busy, let classifier = self.classifier else { return }
            self.busy = true
            self.inferenceQueue.async {
                let result = Result { try classifier.classify(pixelBuffer: buffer, orientation: orientation) }
                Task { @MainActor in
                    self.busy = false
                    self.show(result)
                }
            }
        }
    }

    func classify(photo image: UIImage) {
        photo = image
        guard let classifier, let cg = image.cgImage else { return }
        let orientation = CGImagePropertyOrientation(image.imageOrientation)
        inferenceQueue.async {
            let result = Result { try classifier.classify(cgImage: cg, orientation: orientation) }
            Task { @MainActor in self.show(result) }
        }
    }

    private func show(_ result: Result<FrameResult, Error>) {
        switch result {
        case .success(let r):
            top = r.top
            lastMs = r.totalMs
            inferenceMs = r.inferenceMs
            average.add(r.totalMs)
            averageMs = average.average
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

struct ContentView: View {
    @StateObject private var model = ViewModel()
    @State private var pickerItem: PhotosPickerItem?

    private func ms(_ v: Double) -> String { v.isNaN ? "–" : String(format: "%.1f", v) }

    var body: some View {
        VStack(spacing: 0) {
            ZStack {
                Color.black
                if let photo = model.photo {
                    Image(uiImage: photo).resizable().scaledToFit()
                } else {
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
                ForEach(model.top, id: \.index) { c in
                    HStack {
                        Text(c.label).frame(width: 100, alignment: .leading)
                        ProgressView(value: min(max(c.score, 0), 1))
                        Text(String(format: "%5.1f%%", c.score * 100)).monospacedDigit().frame(width: 64, alignment: .trailing)
                    }
                }
                Text("frame \(ms(model.lastMs)) ms · inference \(ms(model.inferenceMs)) ms · avg \(ms(model.averageMs)) ms")
                    .font(.caption).monospacedDigit()
                Picker("Compute units", selection: $model.compute) {
                    ForEach(ComputeChoice.allCases) { Text($0.rawValue).tag($0) }
                }
                .pickerStyle(.segmented)
                .onChange(of: model.compute) { model.reload() }
                Picker("Model", selection: $model.variant) {
                    ForEach(ModelVariant.allCases) { v in Text(v.title).tag(v) }
                }
                .pickerStyle(.segmented)
                .onChange(of: model.variant) { model.reload() }
                HStack {
                    PhotosPicker("Photo…", selection: $pickerItem, matching: .images)
                    if model.photo != nil {
                        Button("Back to camera") { model.photo = nil; model.top = [] }
                    }
                }
            }
            .padding()
        }
        .onAppear { model.startCamera() }
        .onChange(of: pickerItem) {
            Task {
                if let data = try? await pickerItem?.loadTransferable(type: Data.self), let image = UIImage(data: data) {
                    model.classify(photo: image)
                }
            }
        }
    }
}
