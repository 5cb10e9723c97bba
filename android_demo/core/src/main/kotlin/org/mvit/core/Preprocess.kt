package org.mvit.core

import java.nio.ByteBuffer

/** Where the centre crop lies in the resized image (`model/preprocess.py` `resize_and_crop`). */
data class CropGeometry(val resizedWidth: Int, val resizedHeight: Int, val left: Int, val top: Int, val width: Int, val height: Int) {
    companion object {
        /** Short side to `resizeShort` (at least the crop size), centre crop `inputWidth x inputHeight`. */
        fun of(width: Int, height: Int, pre: PreprocessSpec): CropGeometry {
            val scale = pre.resizeShort.toDouble() / minOf(width, height)
            // Python's round() is round-half-to-even, like Math.rint.
            val newW = maxOf(pre.inputWidth, Math.rint(width * scale).toInt())
            val newH = maxOf(pre.inputHeight, Math.rint(height * scale).toInt())
            return CropGeometry(newW, newH, (newW - pre.inputWidth) / 2, (newH - pre.inputHeight) / 2, pre.inputWidth, pre.inputHeight)
        }
    }
}

/** Pure tensor packing: uint8 RGB crop -> the model's input element values, per the metadata. */
object TensorPacker {
    /** Index of element (channel c of the model, y, x) for the layout. */
    fun index(layout: Layout, c: Int, y: Int, x: Int, h: Int, w: Int): Int =
        if (layout == Layout.NCHW) (c * h + y) * w + x else (y * w + x) * 3 + c

    /** Source RGB channel feeding model channel [c] (BGR swaps R and B). */
    fun sourceChannel(order: ChannelOrder, c: Int): Int = if (order == ChannelOrder.BGR) 2 - c else c

    /** The contract's float input: `(p * scale - mean[c]) / std[c]`, in float32, channel order applied. */
    fun normalize(px: RgbImage, pre: PreprocessSpec, layout: Layout, out: FloatArray) {
        val h = px.height
        val w = px.width
        require(out.size >= h * w * 3) { "float buffer too small" }
        val scale = pre.scale.toFloat()
        val mean = FloatArray(3) { pre.mean[it].toFloat() }
        val std = FloatArray(3) { pre.std[it].toFloat() }
        val d = px.data
        for (c in 0 until 3) {
            val sc = sourceChannel(pre.channelOrder, c)
            val m = mean[sc]
            val s = std[sc]
            for (y in 0 until h) {
                for (x in 0 until w) {
                    val p = (d[(y * w + x) * 3 + sc].toInt() and 0xFF).toFloat()
                    out[index(layout, c, y, x, h, w)] = (p * scale - m) / s
                }
            }
        }
    }

    /** Raw 0..255 pixels as floats (float input with `normalization_in_model`). */
    fun rawFloat(px: RgbImage, order: ChannelOrder, layout: Layout, out: FloatArray) {
        val h = px.height
        val w = px.width
        for (c in 0 until 3) {
            val sc = sourceChannel(order, c)
            for (y in 0 until h) for (x in 0 until w) {
                out[index(layout, c, y, x, h, w)] = (px.data[(y * w + x) * 3 + sc].toInt() and 0xFF).toFloat()
            }
        }
    }

    /** Raw uint8 pixels (uint8 input with `normalization_in_model`). */
    fun packUint8(px: RgbImage, order: ChannelOrder, layout: Layout, out: ByteArray) {
        val h = px.height
        val w = px.width
        for (c in 0 until 3) {
            val sc = sourceChannel(order, c)
            for (y in 0 until h) for (x in 0 until w) {
                out[index(layout, c, y, x, h, w)] = px.data[(y * w + x) * 3 + sc]
            }
        }
    }

    /** `q = clamp(round_half_even(v / scale) + zero_point)`; bytes hold int8 or uint8 bit patterns. */
    fun quantize(v: Float, q: QuantParams, dtype: DType): Byte {
        val r = Math.rint((v / q.scale.toFloat()).toDouble()) + q.zeroPoint
        return when (dtype) {
            DType.INT8 -> r.coerceIn(-128.0, 127.0).toInt().toByte()
            DType.UINT8 -> r.coerceIn(0.0, 255.0).toInt().toByte()
            else -> throw IllegalArgumentException("quantize to $dtype")
        }
    }

    /** Normalise then quantise, for int8/uint8 inputs without in-model normalisation. */
    fun normalizeQuantized(px: RgbImage, pre: PreprocessSpec, layout: Layout, q: QuantParams, dtype: DType, scratch: FloatArray, out: ByteArray) {
        normalize(px, pre, layout, scratch)
        val n = px.width * px.height * 3
        for (i in 0 until n) out[i] = quantize(scratch[i], q, dtype)
    }
}

/**
 * Camera frame / still image -> model input, with every buffer allocated once (re-allocated only
 * when the frame size changes). Not thread-safe: use it from the single inference thread.
 */
class Preprocessor(val meta: ModelMeta) {
    private val pre = meta.preprocess
    private val resampler = Resampler()
    private var frame: RgbImage? = null
    private var rotated: RgbImage? = null

    /** The resized and centre-cropped pixels of the last frame (HWC RGB). */
    val crop = RgbImage(pre.inputWidth, pre.inputHeight)

    /** Model input for float32/float16 inputs (null otherwise). */
    val floatInput: FloatArray? =
        if (meta.input.dtype == DType.FLOAT32 || meta.input.dtype == DType.FLOAT16) FloatArray(meta.input.elementCount) else null

    /** Model input for int8/uint8 inputs, as raw bytes (null otherwise). */
    val byteInput: ByteArray? =
        if (meta.input.dtype == DType.INT8 || meta.input.dtype == DType.UINT8) ByteArray(meta.input.elementCount) else null

    private val scratch = if (byteInput != null && !meta.input.normalizationInModel) FloatArray(meta.input.elementCount) else null

    private fun frameBuffer(w: Int, h: Int): RgbImage {
        val f = frame
        if (f != null && f.width == w && f.height == h) return f
        return RgbImage(w, h).also { frame = it }
    }

    private fun rotatedBuffer(w: Int, h: Int): RgbImage {
        val f = rotated
        if (f != null && f.width == w && f.height == h) return f
        return RgbImage(w, h).also { rotated = it }
    }

    fun fromRgba(buf: ByteBuffer, width: Int, height: Int, rowStride: Int, pixelStride: Int, rotationDegrees: Int) {
        val img = frameBuffer(width, height)
        FrameConverter.rgbaToRgb(buf, width, height, rowStride, pixelStride, img)
        fromUnrotated(img, rotationDegrees)
    }

    fun fromYuv(y: YuvPlane, u: YuvPlane, v: YuvPlane, width: Int, height: Int, rotationDegrees: Int) {
        val img = frameBuffer(width, height)
        FrameConverter.yuv420ToRgb(y, u, v, width, height, img)
        fromUnrotated(img, rotationDegrees)
    }

    fun fromUnrotated(img: RgbImage, rotationDegrees: Int) {
        if (FrameConverter.normalizedDegrees(rotationDegrees) == 0) return fromUpright(img)
        val r = rotatedBuffer(FrameConverter.rotatedWidth(img.width, img.height, rotationDegrees),
            FrameConverter.rotatedHeight(img.width, img.height, rotationDegrees))
        FrameConverter.rotate(img, rotationDegrees, r)
        fromUpright(r)
    }

    /** An upright RGB image: resize, centre crop, pack into [floatInput] or [byteInput]. */
    fun fromUpright(img: RgbImage) {
        val g = CropGeometry.of(img.width, img.height, pre)
        resampler.resizeCrop(img, g.resizedWidth, g.resizedHeight, g.left, g.top, crop, pre.interpolation)
        pack()
    }

    private fun pack() {
        val inp = meta.input
        val f = floatInput
        val b = byteInput
        when {
            f != null && inp.normalizationInModel -> TensorPacker.rawFloat(crop, pre.channelOrder, inp.layout, f)
            f != null -> TensorPacker.normalize(crop, pre, inp.layout, f)
            b != null && inp.normalizationInModel -> TensorPacker.packUint8(crop, pre.channelOrder, inp.layout, b)
            b != null -> TensorPacker.normalizeQuantized(crop, pre, inp.layout, inp.quantization!!, inp.dtype, scratch!!, b)
        }
    }
}
