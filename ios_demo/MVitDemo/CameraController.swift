import AVFoundation
import ClassifierCore
import Foundation
import ImageIO

/// AVCaptureSession on its own queue; frames arrive on a serial video queue and are handled there,
/// synchronously: while a frame is being classified the delegate does not return, so
/// AVFoundation drops the late frames (`alwaysDiscardsLateVideoFrames`) instead of queueing them.
/// Interruptions (a phone call, another app taking the camera, Split View, system pressure) and
/// runtime errors are reported through `onStatus`; AVFoundation resumes an interrupted session by
/// itself, and a session stopped by a media-services reset is restarted if it should be running.
final class CameraController: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    enum Authorization { case notDetermined, authorized, denied }

    let session = AVCaptureSession()
    private let sessionQueue = DispatchQueue(label: "mvit.camera.session")
    private let videoQueue = DispatchQueue(label: "mvit.camera.frames", qos: .userInitiated)
    private let output = AVCaptureVideoDataOutput()
    private var configured = false
    /// Whether the app wants frames (camera mode, in the foreground); only touched on `sessionQueue`.
    private var wanted = false
    private var observers = [NSObjectProtocol]()

    /// Called on the video queue with each frame AVFoundation did not drop; runs to completion there.
    /// `@Sendable`, so a closure made on the main actor is not isolated to it (Swift 6 checks that
    /// at run time and would trap on the video queue).
    var onFrame: (@Sendable (CVPixelBuffer, CGImagePropertyOrientation) -> Void)?
    /// Called with a line for the user when the camera is interrupted or fails, nil when it resumes.
    var onStatus: (@Sendable (String?) -> Void)?

    override init() {
        super.init()
        let center = NotificationCenter.default
        observers.append(center.addObserver(forName: AVCaptureSession.wasInterruptedNotification, object: session, queue: nil) { [weak self] note in
            let raw = (note.userInfo?[AVCaptureSessionInterruptionReasonKey] as? NSNumber)?.intValue
            self?.onStatus?(CameraController.interruptionMessage(raw.flatMap(AVCaptureSession.InterruptionReason.init(rawValue:))))
        })
        observers.append(center.addObserver(forName: AVCaptureSession.interruptionEndedNotification, object: session, queue: nil) { [weak self] _ in
            self?.onStatus?(nil)
        })
        observers.append(center.addObserver(forName: AVCaptureSession.runtimeErrorNotification, object: session, queue: nil) { [weak self] note in
            guard let self else { return }
            let error = note.userInfo?[AVCaptureSessionErrorKey] as? AVError
            self.onStatus?("Camera error: \(error?.localizedDescription ?? "unknown")")
            guard error?.code == .mediaServicesWereReset else { return }
            self.sessionQueue.async {
                if self.wanted && !self.session.isRunning { self.session.startRunning() }
            }
        })
    }

    deinit {
        for o in observers { NotificationCenter.default.removeObserver(o) }
    }

    /// The line shown for an interruption.
    static func interruptionMessage(_ reason: AVCaptureSession.InterruptionReason?) -> String {
        guard let reason else { return "Camera paused" }
        switch reason {
        case .videoDeviceInUseByAnotherClient: return "Camera paused: another app is using it"
        case .videoDeviceNotAvailableWithMultipleForegroundApps: return "Camera paused: not available in Split View or Slide Over"
        case .videoDeviceNotAvailableDueToSystemPressure: return "Camera paused: the phone is too hot or under load"
        case .videoDeviceNotAvailableInBackground: return "Camera paused in the background"
        default: return "Camera paused"
        }
    }

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
            self.wanted = true
            if !self.configured { self.configure() }
            guard self.configured else {
                self.onStatus?("No back camera available: use Photo or Benchmark mode")
                return
            }
            if !self.session.isRunning { self.session.startRunning() }
        }
    }

    /// Stops the capture (photo and benchmark modes, app in the background).
    func stop() {
        sessionQueue.async { [weak self] in
            guard let self else { return }
            self.wanted = false
            if self.session.isRunning { self.session.stopRunning() }
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
