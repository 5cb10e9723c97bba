package org.mvit.core

import kotlin.math.ceil

/**
 * Image resampling identical, to the last bit, to Pillow's `Image.resize` (checked against Pillow 13) for 8-bit RGB:
 * separable convolution (horizontal then vertical pass, or vertical first when the height shrinks
 * by more than twice as many pixels as the width), filter support scaled by the downscale
 * factor (antialiasing), coefficients normalised in double precision and applied in fixed point
 * with 22 fractional bits; NEAREST is Pillow's affine nearest-neighbour sampling.
 *
 * [resizeCrop] computes only the pixels of an output window (the centre crop): a resampled pixel
 * depends only on its own coordinates, so the result equals resize-then-crop.
 */
class Resampler {
    private class Coeffs(val bounds: IntArray, val kk: IntArray, val ksize: Int)

    private val cache = HashMap<Long, Coeffs>()
    private var temp = ByteArray(0)
    private var xIndex = IntArray(0)
    private var yIndex = IntArray(0)

    /** Resize [src] to `newW x newH` and write the window `[left, left+out.width) x [top, top+out.height)` to [out]. */
    fun resizeCrop(src: RgbImage, newW: Int, newH: Int, left: Int, top: Int, out: RgbImage, interpolation: Interpolation) {
        require(left >= 0 && top >= 0 && left + out.width <= newW && top + out.height <= newH) { "crop window outside the resized image" }
        if (newW == src.width && newH == src.height) {
            copyWindow(src, left, top, out)
            return
        }
        when (interpolation) {
            Interpolation.NEAREST -> nearest(src, newW, newH, left, top, out)
            Interpolation.BILINEAR, Interpolation.BICUBIC -> convolve(src, newW, newH, left, top, out, interpolation)
        }
    }

    private fun copyWindow(src: RgbImage, left: Int, top: Int, out: RgbImage) {
        for (y in 0 until out.height) {
            System.arraycopy(src.data, ((top + y) * src.width + left) * 3, out.data, y * out.width * 3, out.width * 3)
        }
    }

    // Pillow Geometry.c ImagingScaleAffine: positions accumulated in double, truncated.
    private fun nearest(src: RgbImage, newW: Int, newH: Int, left: Int, top: Int, out: RgbImage) {
        if (xIndex.size < newW) xIndex = IntArray(newW)
        if (yIndex.size < newH) yIndex = IntArray(newH)
        val ax = src.width.toDouble() / newW
        val ay = src.height.toDouble() / newH
        var xo = ax * 0.5
        for (x in 0 until newW) {
            xIndex[x] = coord(xo).coerceIn(0, src.width - 1)
            xo += ax
        }
        var yo = ay * 0.5
        for (y in 0 until newH) {
            yIndex[y] = coord(yo).coerceIn(0, src.height - 1)
            yo += ay
        }
        val s = src.data
        val o = out.data
        var d = 0
        for (y in top until top + out.height) {
            val row = yIndex[y] * src.width
            for (x in left until left + out.width) {
                val si = (row + xIndex[x]) * 3
                o[d] = s[si]
                o[d + 1] = s[si + 1]
                o[d + 2] = s[si + 2]
                d += 3
            }
        }
    }

    private fun coord(v: Double): Int = if (v < 0.0) -1 else v.toInt()

    private fun convolve(src: RgbImage, newW: Int, newH: Int, left: Int, top: Int, out: RgbImage, interp: Interpolation) {
        val needH = newW != src.width
        val needV = newH != src.height
        val ch = coeffs(src.width, newW, interp)
        val cv = coeffs(src.height, newH, interp)
        // Pillow (Resample.c ImagingResampleInner, 13.x): when the height shrinks by more than twice
        // as many pixels as the width, the vertical pass runs first. The order changes the rounding
        // of the intermediate image, so it is reproduced exactly.
        val dh = src.height - newH
        val horizontalFirst = !(dh > 0 && dh > (src.width - newW) * 2)
        if (horizontalFirst) horizontalThenVertical(src, needH, needV, ch, cv, left, top, out)
        else verticalThenHorizontal(src, needH, ch, cv, left, top, out)
    }

    private fun horizontalThenVertical(src: RgbImage, needH: Boolean, needV: Boolean, ch: Coeffs, cv: Coeffs, left: Int, top: Int, out: RgbImage) {
        val ow = out.width
        val oh = out.height
        // Source rows the vertical pass reads for the output rows of the window.
        val rowFirst: Int
        val rowLast: Int
        if (needV) {
            rowFirst = (top until top + oh).minOf { cv.bounds[it * 2] }
            rowLast = (top until top + oh).maxOf { cv.bounds[it * 2] + cv.bounds[it * 2 + 1] }
        } else {
            rowFirst = top
            rowLast = top + oh
        }
        val tRows = rowLast - rowFirst
        val tSize = ow * tRows * 3
        if (temp.size < tSize) temp = ByteArray(tSize)
        val t = temp
        for (r in 0 until tRows) {
            val srcOff = (rowFirst + r) * src.width * 3
            val tOff = r * ow * 3
            if (needH) horizontalRow(src.data, srcOff, ch, left, ow, t, tOff)
            else System.arraycopy(src.data, srcOff + left * 3, t, tOff, ow * 3)
        }
        if (!needV) {
            System.arraycopy(t, 0, out.data, 0, ow * oh * 3)
            return
        }
        verticalRows(t, ow, ow, 0, rowFirst, cv, top, oh, out.data)
    }

    private fun verticalThenHorizontal(src: RgbImage, needH: Boolean, ch: Coeffs, cv: Coeffs, left: Int, top: Int, out: RgbImage) {
        val ow = out.width
        val oh = out.height
        // Source columns the horizontal pass reads for the output columns of the window.
        val colFirst: Int
        val colLast: Int
        if (needH) {
            colFirst = (left until left + ow).minOf { ch.bounds[it * 2] }
            colLast = (left until left + ow).maxOf { ch.bounds[it * 2] + ch.bounds[it * 2 + 1] }
        } else {
            colFirst = left
            colLast = left + ow
        }
        val tCols = colLast - colFirst
        val tSize = tCols * oh * 3
        if (temp.size < tSize) temp = ByteArray(tSize)
        val t = temp
        verticalRows(src.data, src.width, tCols, colFirst, 0, cv, top, oh, t)
        val o = out.data
        for (yy in 0 until oh) {
            val tOff = yy * tCols * 3
            if (needH) horizontalRow(t, tOff - colFirst * 3, ch, left, ow, o, yy * ow * 3)
            else System.arraycopy(t, tOff, o, yy * ow * 3, ow * 3)
        }
    }

    /** One row of the horizontal pass: output columns [left, left+ow) of a row starting at [srcOff]. */
    private fun horizontalRow(s: ByteArray, srcOff: Int, ch: Coeffs, left: Int, ow: Int, o: ByteArray, oOff: Int) {
        for (xx in 0 until ow) {
            val ox = left + xx
            val xmin = ch.bounds[ox * 2]
            val xcount = ch.bounds[ox * 2 + 1]
            val kOff = ox * ch.ksize
            var s0 = HALF
            var s1 = HALF
            var s2 = HALF
            var si = srcOff + xmin * 3
            for (k in 0 until xcount) {
                val w = ch.kk[kOff + k]
                s0 += (s[si].toInt() and 0xFF) * w
                s1 += (s[si + 1].toInt() and 0xFF) * w
                s2 += (s[si + 2].toInt() and 0xFF) * w
                si += 3
            }
            val oi = oOff + xx * 3
            o[oi] = clip8(s0)
            o[oi + 1] = clip8(s1)
            o[oi + 2] = clip8(s2)
        }
    }

    /**
     * Vertical pass for output rows [top, top+oh): reads an image [inWidth] pixels wide whose row 0 is
     * source row [rowOffset], columns [colFirst, colFirst+cols); writes rows of [cols] pixels.
     */
    private fun verticalRows(s: ByteArray, inWidth: Int, cols: Int, colFirst: Int, rowOffset: Int, cv: Coeffs, top: Int, oh: Int, o: ByteArray) {
        val stride = inWidth * 3
        for (yy in 0 until oh) {
            val oy = top + yy
            val ymin = cv.bounds[oy * 2] - rowOffset
            val ycount = cv.bounds[oy * 2 + 1]
            val kOff = oy * cv.ksize
            for (xx in 0 until cols) {
                var s0 = HALF
                var s1 = HALF
                var s2 = HALF
                var si = ymin * stride + (colFirst + xx) * 3
                for (k in 0 until ycount) {
                    val w = cv.kk[kOff + k]
                    s0 += (s[si].toInt() and 0xFF) * w
                    s1 += (s[si + 1].toInt() and 0xFF) * w
                    s2 += (s[si + 2].toInt() and 0xFF) * w
                    si += stride
                }
                val di = (yy * cols + xx) * 3
                o[di] = clip8(s0)
                o[di + 1] = clip8(s1)
                o[di + 2] = clip8(s2)
            }
        }
    }

    private fun coeffs(inSize: Int, outSize: Int, interp: Interpolation): Coeffs {
        val key = (inSize.toLong() shl 32) or (outSize.toLong() shl 2) or interp.ordinal.toLong()
        return cache.getOrPut(key) { precompute(inSize, outSize, interp) }
    }

    companion object {
        private const val PRECISION_BITS = 32 - 8 - 2
        private const val HALF = 1 shl (PRECISION_BITS - 1)

        private fun clip8(v: Int): Byte {
            val x = v shr PRECISION_BITS
            return (if (x < 0) 0 else if (x > 255) 255 else x).toByte()
        }

        private fun filter(interp: Interpolation, x0: Double): Double {
            val x = if (x0 < 0.0) -x0 else x0
            return when (interp) {
                Interpolation.BILINEAR -> if (x < 1.0) 1.0 - x else 0.0
                Interpolation.BICUBIC -> {
                    val a = -0.5
                    if (x < 1.0) ((a + 2.0) * x - (a + 3.0)) * x * x + 1
                    else if (x < 2.0) (((x - 5) * x + 8) * x - 4) * a
                    else 0.0
                }
                Interpolation.NEAREST -> throw IllegalArgumentException("nearest has no convolution filter")
            }
        }

        private fun support(interp: Interpolation): Double = if (interp == Interpolation.BICUBIC) 2.0 else 1.0

        // Pillow Resample.c precompute_coeffs + normalize_coeffs_8bpc.
        private fun precompute(inSize: Int, outSize: Int, interp: Interpolation): Coeffs {
            val scale = inSize.toDouble() / outSize
            val filterscale = if (scale < 1.0) 1.0 else scale
            val support = support(interp) * filterscale
            val ksize = ceil(support).toInt() * 2 + 1
            val bounds = IntArray(outSize * 2)
            val kk = IntArray(outSize * ksize)
            val k = DoubleArray(ksize)
            val ss = 1.0 / filterscale
            for (xx in 0 until outSize) {
                val center = (xx + 0.5) * scale
                var xmin = (center - support + 0.5).toInt()
                if (xmin < 0) xmin = 0
                var xmax = (center + support + 0.5).toInt()
                if (xmax > inSize) xmax = inSize
                xmax -= xmin
                var ww = 0.0
                for (x in 0 until xmax) {
                    val w = filter(interp, (x + xmin - center + 0.5) * ss)
                    k[x] = w
                    ww += w
                }
                for (x in 0 until xmax) {
                    if (ww != 0.0) k[x] /= ww
                    val v = k[x] * (1 shl PRECISION_BITS)
                    kk[xx * ksize + x] = if (k[x] < 0) (-0.5 + v).toInt() else (0.5 + v).toInt()
                }
                bounds[xx * 2] = xmin
                bounds[xx * 2 + 1] = xmax
            }
            return Coeffs(bounds, kk, ksize)
        }
    }
}
