package org.mvit.core

/**
 * The benchmark mode's fixed input: one of the golden fixture images (raw RGBA, as stored) that the
 * shipped models' cases were recorded on (`shipped_models.json`), installed into the app as
 * `benchmark_input.rgba` + `benchmark_input.json` by `python -m mvit.export.apps.fixtures`.
 */
data class BenchmarkInput(val image: String, val width: Int, val height: Int, val rotationDegrees: Int) {
    /** Bytes of the RGBA file. */
    val byteCount: Int get() = width * height * 4

    /** Throws [MetaException] unless [rgba] holds exactly this image. */
    fun check(rgba: ByteArray) {
        if (rgba.size != byteCount) throw MetaException("$RGBA_ASSET holds ${rgba.size} bytes, $image needs $byteCount (${width}x$height RGBA)")
    }

    companion object {
        const val RGBA_ASSET = "benchmark_input.rgba"
        const val JSON_ASSET = "benchmark_input.json"

        fun parse(text: String): BenchmarkInput {
            val m = try {
                Json.parseObject(text)
            } catch (e: Json.ParseException) {
                throw MetaException("$JSON_ASSET is not valid JSON: ${e.message}")
            }
            val input = BenchmarkInput(m.str("image"), m.int("width"), m.int("height"), m.int("rotation_degrees"))
            if (input.width <= 0 || input.height <= 0) throw MetaException("$JSON_ASSET: width and height must be positive")
            FrameConverter.normalizedDegrees(input.rotationDegrees)
            return input
        }
    }
}
