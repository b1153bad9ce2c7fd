package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/**
 * Typed, path-aware reads over org.json (which Android ships). org.json coerces freely (`getString` turns a
 * number into a string); a bundle is hostile input, so every read here checks the JSON type and, on a miss,
 * throws `BundleError.InvalidManifest` naming the full key path (e.g. `components.unet.inputs[0].shape[1]`).
 */
internal class JsonNode(val obj: JSONObject, val path: String, private val file: String = "") {

    private fun key(k: String) = if (path.isEmpty()) k else "$path.$k"

    private fun fail(k: String, expected: String): Nothing =
        throw BundleError.InvalidManifest(if (file.isEmpty()) key(k) else "$file: ${key(k)}", expected)

    fun has(k: String): Boolean = obj.has(k) && obj.opt(k) != JSONObject.NULL

    fun keys(): List<String> = obj.keys().asSequence().toList()

    fun string(k: String): String = obj.opt(k) as? String ?: fail(k, "a string")

    fun optString(k: String): String? = if (!has(k)) null else string(k)

    fun double(k: String): Double = asDouble(obj.opt(k)) ?: fail(k, "a finite number")

    fun optDouble(k: String): Double? = if (!has(k)) null else double(k)

    fun int(k: String): Int = asInt(obj.opt(k)) ?: fail(k, "an integer")

    fun optInt(k: String): Int? = if (!has(k)) null else int(k)

    fun long(k: String): Long = asLong(obj.opt(k)) ?: fail(k, "an integer")

    fun optLong(k: String): Long? = if (!has(k)) null else long(k)

    fun bool(k: String): Boolean = obj.opt(k) as? Boolean ?: fail(k, "true or false")

    fun optBool(k: String): Boolean? = if (!has(k)) null else bool(k)

    fun node(k: String): JsonNode = JsonNode(obj.opt(k) as? JSONObject ?: fail(k, "an object"), key(k), file)

    fun optNode(k: String): JsonNode? = if (!has(k)) null else node(k)

    fun array(k: String): JsonList = JsonList(obj.opt(k) as? JSONArray ?: fail(k, "a list"), key(k), file)

    fun optArray(k: String): JsonList? = if (!has(k)) null else array(k)

    companion object {
        fun asDouble(v: Any?): Double? = (v as? Number)?.toDouble()?.takeIf { it.isFinite() }

        fun asLong(v: Any?): Long? = when (v) {
            is Int -> v.toLong()
            is Long -> v
            is Double -> if (v.isFinite() && v == Math.rint(v) && kotlin.math.abs(v) < 9.0e15) v.toLong() else null
            else -> null
        }

        fun asInt(v: Any?): Int? = asLong(v)?.takeIf { it in Int.MIN_VALUE..Int.MAX_VALUE }?.toInt()

        /**
         * Parse a JSON document. edgediff-bundle/1 files may hold the non-standard literals NaN / Infinity /
         * -Infinity (Python's json writes them); org.json refuses them, so outside strings they are read as null
         * and `nonFinite` reports that any were seen (edgediff-bundle/2 is strict JSON and must have none).
         */
        fun parse(text: String, file: String): Parsed {
            val (clean, replaced) = nullNonFinite(text)
            val obj = try {
                JSONObject(clean)
            } catch (e: JSONException) {
                throw BundleError.InvalidJson(file, e.message ?: "parse error")
            }
            return Parsed(JsonNode(obj, "", if (file == "manifest.json") "" else file), replaced)
        }

        private val NON_FINITE = listOf("-Infinity", "Infinity", "NaN")

        internal fun nullNonFinite(text: String): Pair<String, Boolean> {
            val out = StringBuilder(text.length)
            var inString = false
            var replaced = false
            var i = 0
            while (i < text.length) {
                val c = text[i]
                if (inString) {
                    out.append(c)
                    if (c == '\\' && i + 1 < text.length) {
                        out.append(text[i + 1]); i += 2; continue
                    }
                    if (c == '"') inString = false
                    i++
                    continue
                }
                if (c == '"') {
                    inString = true; out.append(c); i++; continue
                }
                val literal = NON_FINITE.firstOrNull { text.startsWith(it, i) }
                if (literal != null) {
                    out.append("null"); replaced = true; i += literal.length; continue
                }
                out.append(c)
                i++
            }
            return out.toString() to replaced
        }
    }

    data class Parsed(val root: JsonNode, val hadNonFinite: Boolean)
}

internal class JsonList(val array: JSONArray, val path: String, private val file: String = "") {
    val size: Int get() = array.length()

    private fun fail(i: Int, expected: String): Nothing =
        throw BundleError.InvalidManifest(if (file.isEmpty()) "$path[$i]" else "$file: $path[$i]", expected)

    fun node(i: Int): JsonNode = JsonNode(array.opt(i) as? JSONObject ?: fail(i, "an object"), "$path[$i]", file)

    fun double(i: Int): Double = JsonNode.asDouble(array.opt(i)) ?: fail(i, "a finite number")

    fun int(i: Int): Int = JsonNode.asInt(array.opt(i)) ?: fail(i, "an integer")

    fun string(i: Int): String = array.opt(i) as? String ?: fail(i, "a string")

    fun raw(i: Int): Any? = array.opt(i)

    fun nodes(): List<JsonNode> = (0 until size).map { node(it) }

    fun doubles(): DoubleArray = DoubleArray(size) { double(it) }

    fun ints(): IntArray = IntArray(size) { int(it) }
}
