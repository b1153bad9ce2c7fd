package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** The JSON reader accepts what Python's json.loads accepts and refuses the rest with a position (JSONValueTests.swift). */
class JsonTest {
    @Test
    fun `Python's JSON is read`() {
        val text = """{"a": [1, -2.5e-3, true, false, null], "b": "tab\tquote\" \u00e9 \ud83d\udc31", "c": -Infinity, "d": NaN, "a": 7}"""
        val parser = StrictJson(text, "t.json")
        val value = parser.document() as JSONObject
        assertEquals(7, JsonNode.asInt(value.get("a"))) // a repeated key keeps the last value
        assertEquals("tab\tquote\" é 🐱", value.getString("b"))
        assertEquals(Double.NEGATIVE_INFINITY, (value.get("c") as NonFinite).value)
        assertTrue((value.get("d") as NonFinite).value.isNaN())
        assertTrue(parser.sawNonFinite)
        val numbers = StrictJson("[1, 2.0, 3e2]", "t").document() as JSONArray
        assertEquals(listOf(1, 2, 300), (0 until numbers.length()).map { JsonNode.asInt(numbers.get(it)) })
        assertNull(JsonNode.asInt(1.5))
        assertNull(JsonNode.asInt(true)) // true is not 1
        assertNull(JsonNode.asDouble(NonFinite(Double.NaN))) // never a number
    }

    @Test
    fun `broken JSON is a named error with a position`() {
        for (text in listOf("", "{", "{\"a\" 1}", "[1,]", "\"\\x\"", "01", "{\"a\": tru}", "[1] 2", "[".repeat(10_000), "{'a': 1}", "// c\n{}", "\uFEFF{}")) {
            val e = assertThrows(BundleError.InvalidJson::class.java) { StrictJson(text, "t.json").document() }
            assertTrue("line" in e.detail, e.detail)
        }
    }

    @Test
    fun `null beside its reason is the non-finite number it stands for`() {
        val parsed = JsonNode.parse("""{"x": null, "x_reason": "-infinity, not representable in JSON", "y": null, "z": [null]}""", "t.json")
        assertEquals(Double.NEGATIVE_INFINITY, (parsed.root.raw("x") as NonFinite).value)
        assertEquals(listOf("x", "y", "z"), parsed.root.keys().sorted())
        assertEquals(false, parsed.hadNonFinite)
        assertEquals(null, parsed.root.optDouble("y")) // a null without a reason is an absent key
        val e = assertThrows(BundleError.InvalidManifest::class.java) { parsed.root.optDouble("x") }
        assertEquals("t.json: x", e.key)
    }
}
