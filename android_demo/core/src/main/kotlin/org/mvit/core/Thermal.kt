package org.mvit.core

/**
 * A platform's thermal levels in rising order, and the first level at which the platform says it
 * throttles. Rows measured at or above it are marked `throttled`.
 */
data class ThermalScale(val names: List<String>, val throttledFrom: Int) {
    init {
        require(names.isNotEmpty() && throttledFrom in names.indices) { "throttledFrom must name one of $names" }
    }

    /** The name of [level] (`thermal_before` / `thermal_after` in the benchmark JSON). */
    fun name(level: Int): String = names[checked(level)]

    /** Whether [level] is one the platform throttles at. */
    fun throttles(level: Int): Boolean = checked(level) >= throttledFrom

    private fun checked(level: Int): Int {
        require(level in names.indices) { "thermal level $level is not one of 0..${names.size - 1}" }
        return level
    }

    companion object {
        /**
         * `PowerManager.getCurrentThermalStatus()` (API 29+): THERMAL_STATUS_NONE = 0 … SHUTDOWN = 6.
         * Android documents throttling from LIGHT ("light throttling where UX is not impacted").
         */
        val ANDROID = ThermalScale(listOf("none", "light", "moderate", "severe", "critical", "emergency", "shutdown"), 1)
    }
}

/** The thermal level before and after one timed slot of a benchmark. */
data class ThermalReading(val before: Int, val after: Int)
