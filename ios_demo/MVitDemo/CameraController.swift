import AVFoundation
import ClassifierCore
import Foundation
import ImageIO

/// AVCaptureSession on its own queue; frames arrive on a serial video queue and are handled there,
/// synchronously: while a frame is being classified the delegate does not return, so
/// AVFoundation drops the late frames (`alwaysDiscardsLateVideoFrames`) instead of queueing them.
final class CameraController: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    enum Authorization { case notDetermined, authorized, denied }

    let session = AVCaptureSession()
    private let sessionQueue = DispatchQueue(label: "mvit.camera.session")
    private let videoQueue = DispatchQueue(label: "mvit.camera.frames", qos: .userInitiated)
    private let output = AVCaptureVideoDataOutput()
    private var configured = false

    /// Called on the video queue with each frame AVFoundation did not drop; runs to completion there.
    var onFrame: ((CVPixelBuffer, CGImagePropertyOrientation) -> Void)?

    static var authorization: Authorization {
        switch AVCaptureDevice.authorizationStatus(for: .video) {
        case .authorized: return .authorized
        case .notDetermined: return .notDetermined
        default: return .denied
        }
    }

    static func requestAccess(_ done: @escaping @Sendable (Bool) -> Void) {
        AVCaptureDevice.requestAccess(for: .video) { granted in DispatchQueue.main.async { done(granted) } }
    }

    func start() {
        sessionQueue.async { [weak self] in
            guard let self else { return }
            if !self.configured { self.configure() }
            if !self.session.isRunning { self.session.startRunning() }
        }
    }

    /// Stops the capture (photo and benchmark modes, app in the background).
    func stop() {
        sessionQueue.async { [weak self] in
            guard let self, self.session.isRunning else { return }
            self.session.stopRunning()
        }
    }

    private func configure() {
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        session.sessionPreset = .hd1280x720
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else { return }
        session.addInput(input)
        output.alwaysDiscardsLateVideoFrames = true
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.setSampleBufferDelegate(self, queue: videoQueue)
        guard session.canAddOutput(output) else { return }
        session.addOutput(output)
        configured = true
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let buffer = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        // The back camera's buffers are landscape; in portrait the upright image is rotated 90° clockwise.
        onFrame?(buffer, .right)
    }
}
