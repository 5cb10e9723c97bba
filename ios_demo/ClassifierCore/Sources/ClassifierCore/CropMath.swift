import Foundation

/// Where the centre crop lies in the resized image (model/preprocess.py `resize_and_crop`).
public struct CropGeometry: Equatable {
    public let resizedWidth: Int
    public let resizedHeight: Int
    public let left: Int
    public let top: Int
    public let width: Int
    public let height: Int

    public init(resizedWidth: Int, resizedHeight: Int, left: Int, top: Int, width: Int, height: Int) {
        self.resizedWidth = resizedWidth
        self.resizedHeight = resizedHeight
        self.left = left
        self.top = top
        self.width = width
        self.height = height
    }

    /// Short side to `resizeShort` (never smaller than the crop), then centre crop `inputSize`.
    public static func of(width: Int, height: Int, spec: PreprocessSpec) -> CropGeometry {
        let scale = Double(spec.resizeShort) / Double(min(width, height))
        // Python's round() rounds half to even.
        let newW = max(spec.inputWidth, Int((Double(width) * scale).rounded(.toNearestOrEven)))
        let newH = max(spec.inputHeight, Int((Double(height) * scale).rounded(.toNearestOrEven)))
        return CropGeometry(resizedWidth: newW, resizedHeight: newH,
                            left: (newW - spec.inputWidth) / 2, top: (newH - spec.inputHeight) / 2,
                            width: spec.inputWidth, height: spec.inputHeight)
    }

    /// The crop in the *upright source image*, normalised to 0...1 with the origin at the top left.
    public var normalizedRectTopLeft: (x: Double, y: Double, width: Double, height: Double) {
        (Double(left) / Double(resizedWidth), Double(top) / Double(resizedHeight),
         Double(width) / Double(resizedWidth), Double(height) / Double(resizedHeight))
    }

    /// `MLFeatureValue.ImageOption.cropRect` for this crop. Core ML's header defines it as "a crop
    /// region of interest of image source in normalized coordinates" (0...1, not pixels) and hands
    /// it to Vision's crop-and-scale, so the origin is Vision's (bottom left). For a centre crop the
    /// two origins differ by at most one resized pixel's rounding.
    public var coreMLCropRect: (x: Double, y: Double, width: Double, height: Double) { visionRegionOfInterest }

    /// Vision's `regionOfInterest` (normalised, origin at the *bottom* left) for this crop; use it
    /// with `imageCropAndScaleOption = .scaleFill` so Vision scales exactly the contract's crop.
    public var visionRegionOfInterest: (x: Double, y: Double, width: Double, height: Double) {
        let r = normalizedRectTopLeft
        return (r.x, 1.0 - r.y - r.height, r.width, r.height)
    }
}

/// Clockwise rotation needed to show a frame upright, from an EXIF/CGImagePropertyOrientation value.
public enum Orientation {
    /// EXIF orientation 1...8 -> (clockwise degrees, mirrored).
    public static func exif(_ value: Int) -> (degrees: Int, mirrored: Bool) {
        switch value {
        case 2: return (0, true)
        case 3: return (180, false)
        case 4: return (180, true)
        case 5: return (90, true)
        case 6: return (90, false)
        case 7: return (270, true)
        case 8: return (270, false)
        default: return (0, false)
        }
    }

    /// Size of a `width x height` image after a clockwise rotation.
    public static func rotatedSize(width: Int, height: Int, degrees: Int) -> (width: Int, height: Int) {
        let d = ((degrees % 360) + 360) % 360
        return (d == 90 || d == 270) ? (height, width) : (width, height)
    }
}
