package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class JsonTest {
    @Test
    fun parsesAllValueKinds() {
        val v = Json.parseObject("""{"a": [1, -2.5, 3e2, true, false, null], "s": "x\"\\\/\n\u00e9", "o": {}, "e": []}""")
        assertEquals(listOf(1L, -2.5, 300.0, true, false, null), v["a"])
        assertEquals("x\"\\/\n\u00e9", v["s"])
        assertEquals(emptyMap<String, Any?>(), v["o"])
        assertEquals(emptyList<Any?>(), v["e"])
    }

    @Test
    fun keepsKeyOrderAndBigNumbers() {
        val v = Json.parseObject("""{"z": 1, "a": 2, "big": 12345678901234, "neg0": -0}""")
        assertEquals(listOf("z", "a", "big", "neg0"), v.keys.toList())
        assertEquals(12345678901234L, v["big"])
    }

    @Test
    fun rejectsMalformedInput() {
        for (bad in listOf("", "{", "{\"a\" 1}", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"abc", "{} x", "[1 2]", "\"\\q\"")) {
            try {
                Json.parse(bad)
                fail("accepted '$bad'")
            } catch (e: Json.ParseException) {
                assertTrue(e.message!!.contains("offset"))
            }
        }
    }

    @Test
    fun parsesNullTopLevel() {
        assertNull(Json.parse(" null "))
    }
}
