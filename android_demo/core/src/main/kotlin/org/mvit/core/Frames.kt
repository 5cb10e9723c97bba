package org.mvit.core

import java.nio.ByteBuffer

/** 8-bit RGB pixels, interleaved, row-major, no padding: `data[(y * width + x) * 3 + c]`. */
class RgbImage(val width: Int, val height: Int, val data: ByteArray = ByteArray(width * height * 3)) {
    init {
        require(width > 0 && height > 0) { "image size must be positive, got ${width}x$height" }
        require(data.size >= width * height * 3) { "buffer too small for ${width}x$height RGB" }
    }

    operator fun get(x: Int, y: Int, c: Int): Int = data[(y * width + x) * 3 + c].toInt() and 0xFF
}

/** One plane of a YUV_420_888 frame, as Android's `Image.Plane` describes it. */
class YuvPlane(val buffer: ByteBuffer, val rowStride: Int, val pixelStride: Int) {
    init {
        require(rowStride > 0 && pixelStride > 0) { "strides must be positive" }
    }
}

/** Frame conversion into [RgbImage]s; every function writes into a caller-owned (reusable) image. */
object FrameConverter {
    /**
     * RGBA_8888 (e.g. CameraX `OUTPUT_IMAGE_FORMAT_RGBA_8888` or a decoded Bitmap) -> RGB.
     * `rowStride` is in bytes and may include padding, `pixelStride` is 4 for RGBA.
     * Alpha is dropped (camera frames are opaque).
     */
    fun rgbaToRgb(src: ByteBuffer, width: Int, height: Int, rowStride: Int, pixelStride: Int, out: RgbImage) {
        require(out.width == width && out.height == height) { "output image must be ${width}x$height" }
        require(pixelStride >= 3 && rowStride >= width * pixelStride) { "bad strides row=$rowStride pixel=$pixelStride" }
        val base = src.position()
        val o = out.data
        var d = 0
        for (y in 0 until height) {
            var s = base + y * rowStride
            for (x in 0 until width) {
                o[d] = src.get(s)
                o[d + 1] = src.get(s + 1)
                o[d + 2] = src.get(s + 2)
                d += 3
                s += pixelStride
            }
        }
    }

    fun rgbaToRgb(src: ByteArray, width: Int, height: Int, out: RgbImage) =
        rgbaToRgb(ByteBuffer.wrap(src), width, height, width * 4, 4, out)

    /**
     * YUV_420_888 -> RGB, honouring each plane's row and pixel strides (planar I420 and interleaved
     * NV21/NV12 chroma both arrive as this format). Full-range BT.601 (JFIF, what Camera2 delivers),
     * 16.16 fixed point with floor shifts; chroma is sampled at (y / 2, x / 2).
     */
    fun yuv420ToRgb(yp: YuvPlane, up: YuvPlane, vp: YuvPlane, width: Int, height: Int, out: RgbImage) {
        require(out.width == width && out.height == height) { "output image must be ${width}x$height" }
        val yb = yp.buffer
        val ub = up.buffer
        val vb = vp.buffer
        val y0 = yb.position()
        val u0 = ub.position()
        val v0 = vb.position()
        val o = out.data
        var d = 0
        for (row in 0 until height) {
            val yRow = y0 + row * yp.rowStride
            val uRow = u0 + (row shr 1) * up.rowStride
            val vRow = v0 + (row shr 1) * vp.rowStride
            for (col in 0 until width) {
                val yy = yb.get(yRow + col * yp.pixelStride).toInt() and 0xFF
                val u = (ub.get(uRow + (col shr 1) * up.pixelStride).toInt() and 0xFF) - 128
                val v = (vb.get(vRow + (col shr 1) * vp.pixelStride).toInt() and 0xFF) - 128
                o[d] = clamp8(yy + ((91881 * v + 32768) shr 16))
                o[d + 1] = clamp8(yy + ((-22554 * u - 46802 * v + 32768) shr 16))
                o[d + 2] = clamp8(yy + ((116130 * u + 32768) shr 16))
                d += 3
            }
        }
    }

    /**
     * Rotate clockwise by 0/90/180/270 degrees (CameraX `rotationDegrees`, EXIF orientations 1/6/3/8)
     * into the caller's [out] (reused across frames): index arithmetic only, nothing is allocated.
     */
    fun rotate(src: RgbImage, degrees: Int, out: RgbImage) {
        val deg = normalizedDegrees(degrees)
        val w = src.width
        val h = src.height
        val swap = deg == 90 || deg == 270
        require(out.width == (if (swap) h else w) && out.height == (if (swap) w else h)) { "bad output size for rotation" }
        val s = src.data
        val o = out.data
        if (deg == 0) {
            System.arraycopy(s, 0, o, 0, w * h * 3)
            return
        }
        // Destination (nx, ny) of source (x, y): 90: (h-1-y, x); 180: (w-1-x, h-1-y); 270: (y, w-1-x).
        // As a destination offset: start + x * stepX + y * stepY (in pixels of `out`).
        val ow = out.width
        val start: Int
        val stepX: Int
        val stepY: Int
        when (deg) {
            90 -> { start = h - 1; stepX = ow; stepY = -1 }
            180 -> { start = (h - 1) * ow + (w - 1); stepX = -1; stepY = -ow }
            else -> { start = (w - 1) * ow; stepX = -ow; stepY = 1 }
        }
        var si = 0
        for (y in 0 until h) {
            var di = (start + y * stepY) * 3
            val step = stepX * 3
            for (x in 0 until w) {
                o[di] = s[si]
                o[di + 1] = s[si + 1]
                o[di + 2] = s[si + 2]
                si += 3
                di += step
            }
        }
    }

    /** Degrees reduced to 0/90/180/270; anything that is not a multiple of 90 is refused. */
    fun normalizedDegrees(degrees: Int): Int {
        require(degrees % 90 == 0) { "rotation must be a multiple of 90 degrees, got $degrees" }
        return ((degrees % 360) + 360) % 360
    }

    /** Width of a `width x height` image after a clockwise rotation. */
    fun rotatedWidth(width: Int, height: Int, degrees: Int): Int = if (normalizedDegrees(degrees) % 180 == 0) width else height

    /** Height of a `width x height` image after a clockwise rotation. */
    fun rotatedHeight(width: Int, height: Int, degrees: Int): Int = if (normalizedDegrees(degrees) % 180 == 0) height else width

    internal fun clamp8(v: Int): Byte = (if (v < 0) 0 else if (v > 255) 255 else v).toByte()
}
