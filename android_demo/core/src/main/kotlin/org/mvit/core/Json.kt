package org.mvit.core

/**
 * A small, strict JSON reader (RFC 8259) so that `core` needs nothing but the Kotlin stdlib.
 *
 * Objects become [Map] (insertion ordered), arrays [List], numbers [Double] (or [Long] when they are
 * integral and written without fraction/exponent), strings [String], booleans, and null.
 */
object Json {
    class ParseException(message: String, val offset: Int) : IllegalArgumentException("$message at offset $offset")

    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val v = p.value()
        p.skipWs()
        if (p.pos != text.length) throw ParseException("trailing characters", p.pos)
        return v
    }

    fun parseObject(text: String): Map<String, Any?> {
        @Suppress("UNCHECKED_CAST")
        return parse(text) as? Map<String, Any?> ?: throw ParseException("top level is not an object", 0)
    }

    private class Parser(val s: String) {
        var pos = 0

        fun skipWs() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun fail(msg: String): Nothing = throw ParseException(msg, pos)

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end of input")
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c in '0'..'9') num() else fail("unexpected character '$c'")
            }
        }

        fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("invalid literal")
            pos += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val m = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == '}') { pos++; return m }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') fail("expected a string key")
                val k = str()
                skipWs()
                if (pos >= s.length || s[pos] != ':') fail("expected ':'")
                pos++
                skipWs()
                m[k] = value()
                skipWs()
                if (pos >= s.length) fail("unterminated object")
                when (s[pos]) {
                    ',' -> pos++
                    '}' -> { pos++; return m }
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun arr(): List<Any?> {
            val l = ArrayList<Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == ']') { pos++; return l }
            while (true) {
                skipWs()
                l.add(value())
                skipWs()
                if (pos >= s.length) fail("unterminated array")
                when (s[pos]) {
                    ',' -> pos++
                    ']' -> { pos++; return l }
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun str(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= s.length) fail("unterminated escape")
                        when (val e = s[pos++]) {
                            '"' -> sb.append('"')
                            '\\' -> sb.append('\\')
                            '/' -> sb.append('/')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("bad unicode escape")
                                val hex = s.substring(pos, pos + 4)
                                sb.append(hex.toIntOrNull(16)?.toChar() ?: fail("bad unicode escape"))
                                pos += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        fun num(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            if (pos >= s.length) fail("bad number")
            if (s[pos] == '0') pos++ else if (s[pos] in '1'..'9') { while (pos < s.length && s[pos] in '0'..'9') pos++ } else fail("bad number")
            var integral = true
            if (pos < s.length && s[pos] == '.') {
                integral = false
                pos++
                if (pos >= s.length || s[pos] !in '0'..'9') fail("bad fraction")
                while (pos < s.length && s[pos] in '0'..'9') pos++
            }
            if (pos < s.length && (s[pos] == 'e' || s[pos] == 'E')) {
                integral = false
                pos++
                if (pos < s.length && (s[pos] == '+' || s[pos] == '-')) pos++
                if (pos >= s.length || s[pos] !in '0'..'9') fail("bad exponent")
                while (pos < s.length && s[pos] in '0'..'9') pos++
            }
            val t = s.substring(start, pos)
            if (integral) t.toLongOrNull()?.let { return it }
            return t.toDouble()
        }
    }
}

// Typed accessors used by the metadata and fixture readers.
internal fun Map<String, Any?>.obj(key: String): Map<String, Any?> {
    @Suppress("UNCHECKED_CAST")
    return this[key] as? Map<String, Any?> ?: throw MetaException("'$key' must be an object")
}

internal fun Map<String, Any?>.objOrNull(key: String): Map<String, Any?>? {
    @Suppress("UNCHECKED_CAST")
    return when (val v = this[key]) {
        null -> null
        is Map<*, *> -> v as Map<String, Any?>
        else -> throw MetaException("'$key' must be an object or null")
    }
}

internal fun Map<String, Any?>.str(key: String): String =
    this[key] as? String ?: throw MetaException("'$key' must be a string")

internal fun Map<String, Any?>.strOr(key: String, default: String): String =
    if (this[key] == null) default else str(key)

internal fun Map<String, Any?>.num(key: String): Double =
    (this[key] as? Number)?.toDouble() ?: throw MetaException("'$key' must be a number")

internal fun Map<String, Any?>.numOr(key: String, default: Double): Double =
    if (this[key] == null) default else num(key)

internal fun Map<String, Any?>.int(key: String): Int {
    val v = num(key)
    if (v != Math.floor(v)) throw MetaException("'$key' must be an integer")
    return v.toInt()
}

internal fun Map<String, Any?>.bool(key: String, default: Boolean): Boolean =
    when (val v = this[key]) {
        null -> default
        is Boolean -> v
        else -> throw MetaException("'$key' must be true or false")
    }

internal fun Map<String, Any?>.numList(key: String): List<Double> {
    val l = this[key] as? List<*> ?: throw MetaException("'$key' must be a list of numbers")
    return l.map { (it as? Number)?.toDouble() ?: throw MetaException("'$key' must be a list of numbers") }
}

internal fun Map<String, Any?>.intList(key: String): List<Int> = numList(key).map {
    if (it != Math.floor(it)) throw MetaException("'$key' must be a list of integers")
    it.toInt()
}

/** Writes maps, lists, strings, numbers, booleans and null as indented JSON (RFC 8259). */
object JsonWriter {
    fun write(value: Any?): String = StringBuilder().also { append(it, value, 0) }.append('\n').toString()

    private fun append(sb: StringBuilder, v: Any?, indent: Int) {
        when (v) {
            null -> sb.append("null")
            is String -> string(sb, v)
            is Boolean -> sb.append(v)
            is Int, is Long, is Short, is Byte -> sb.append(v.toString())
            is Number -> {
                val d = v.toDouble()
                require(d.isFinite()) { "JSON has no representation for $d" }
                sb.append(d.toString()) // "9.8", "41.0", "1.0E-4": all valid JSON numbers
            }
            is Map<*, *> -> container(sb, v.entries.toList(), indent, '{', '}') { e, i ->
                string(sb, e.key as? String ?: throw IllegalArgumentException("JSON keys are strings, got ${e.key}"))
                sb.append(": ")
                append(sb, e.value, i)
            }
            is List<*> -> container(sb, v, indent, '[', ']') { e, i -> append(sb, e, i) }
            else -> throw IllegalArgumentException("cannot write ${v::class.java.simpleName} as JSON")
        }
    }

    private fun <T> container(sb: StringBuilder, items: List<T>, indent: Int, open: Char, close: Char, item: (T, Int) -> Unit) {
        if (items.isEmpty()) {
            sb.append(open).append(close)
            return
        }
        sb.append(open).append('\n')
        items.forEachIndexed { n, e ->
            repeat(indent + 2) { sb.append(' ') }
            item(e, indent + 2)
            if (n < items.size - 1) sb.append(',')
            sb.append('\n')
        }
        repeat(indent) { sb.append(' ') }
        sb.append(close)
    }

    private fun string(sb: StringBuilder, s: String) {
        sb.append('"')
        for (c in s) {
            when {
                c == '"' -> sb.append("\\\"")
                c == '\\' -> sb.append("\\\\")
                c == '\n' -> sb.append("\\n")
                c == '\r' -> sb.append("\\r")
                c == '\t' -> sb.append("\\t")
                c < ' ' -> sb.append(String.format(java.util.Locale.ROOT, "\\u%04x", c.code))
                else -> sb.append(c)
            }
        }
        sb.append('"')
    }
}
