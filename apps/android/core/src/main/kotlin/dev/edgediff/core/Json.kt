package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject

/**
 * A non-finite number of a bundle file: a NaN / Infinity / -Infinity literal (edgediff-bundle/1, Python's json
 * writes them) or, in strict JSON, `key: null` with `key_reason` beside it (edgediff/contract.py
 * `strict_json_value`). Kept as its own type so no typed read can take it for a finite number (org.json refuses
 * to hold a NaN Double) nor for an absent key; the Swift twin keeps a `JSONValue.number(.nan / ±.infinity)`.
 */
internal class NonFinite(val value: Double) {
    override fun toString() = value.toString()
}

/**
 * Typed, path-aware reads over parsed JSON. A bundle is hostile input, so every read checks the JSON type and,
 * on a miss, throws `BundleError.InvalidManifest` naming the full key path (e.g.
 * `components.unet.inputs[0].shape[1]`). The rules are those of the Swift twin (Manifest.swift `ManifestReader`):
 * a required string is non-empty, null is the same as absent, a non-finite number is never a number.
 */
internal class JsonNode(val obj: JSONObject, val path: String, private val file: String = "") {

    private fun key(k: String) = if (path.isEmpty()) k else "$path.$k"

    private fun fail(k: String, expected: String): Nothing =
        throw BundleError.InvalidManifest(if (file.isEmpty()) key(k) else "$file: ${key(k)}", expected)

    fun has(k: String): Boolean = obj.has(k) && obj.opt(k) != JSONObject.NULL

    fun keys(): List<String> = obj.keys().asSequence().toList()

    fun raw(k: String): Any? = obj.opt(k)

    /** A required string: present and non-empty. */
    fun string(k: String): String = (obj.opt(k) as? String)?.takeIf { it.isNotEmpty() } ?: fail(k, "a non-empty string")

    /** An optional string: absent or null gives null; "" is a string. */
    fun optString(k: String): String? = if (!has(k)) null else obj.opt(k) as? String ?: fail(k, "a string")

    fun double(k: String): Double = asDouble(obj.opt(k)) ?: fail(k, "a finite number")

    fun optDouble(k: String): Double? = if (!has(k)) null else double(k)

    fun int(k: String): Int = asInt(obj.opt(k)) ?: fail(k, "an integer")

    fun optInt(k: String): Int? = if (!has(k)) null else int(k)

    fun long(k: String): Long = asLong(obj.opt(k)) ?: fail(k, "an integer")

    fun optLong(k: String): Long? = if (!has(k)) null else long(k)

    /** An optional count (integer >= 0), as Swift's `optionalCount`. */
    fun optCount(k: String): Int? = if (!has(k)) null else asInt(obj.opt(k))?.takeIf { it >= 0 } ?: fail(k, "a non-negative integer")

    fun bool(k: String): Boolean = obj.opt(k) as? Boolean ?: fail(k, "true or false")

    fun optBool(k: String): Boolean? = if (!has(k)) null else bool(k)

    fun node(k: String): JsonNode = JsonNode(obj.opt(k) as? JSONObject ?: fail(k, "an object"), key(k), file)

    fun optNode(k: String): JsonNode? = if (!has(k)) null else node(k)

    fun array(k: String): JsonList = JsonList(obj.opt(k) as? JSONArray ?: fail(k, "a list"), key(k), file)

    fun optArray(k: String): JsonList? = if (!has(k)) null else array(k)

    companion object {
        /** JSON has one number type: integers within +-2^53 read as integers, as a Swift Double does. */
        private const val MAX_EXACT = 9_007_199_254_740_992L

        fun asDouble(v: Any?): Double? = (v as? Number)?.toDouble()?.takeIf { it.isFinite() }

        fun asLong(v: Any?): Long? = when (v) {
            is Int -> v.toLong()
            is Long -> v.takeIf { it in -MAX_EXACT..MAX_EXACT }
            is Double -> if (v.isFinite() && v == Math.rint(v) && kotlin.math.abs(v) <= MAX_EXACT) v.toLong() else null
            else -> null
        }

        fun asInt(v: Any?): Int? = asLong(v)?.takeIf { it in Int.MIN_VALUE..Int.MAX_VALUE }?.toInt()

        /**
         * Parse a JSON document that must be an object (`what` names it in errors; "manifest.json" keys are
         * reported without a file prefix). NaN / Infinity literals are allowed (edgediff-bundle/1) and reported in
         * `hadNonFinite`; `key: null` beside a string `key_reason` becomes the non-finite number it stands for.
         */
        fun parse(text: String, file: String): Parsed {
            val parser = StrictJson(text, file)
            val value = parser.document()
            val obj = value as? JSONObject
                ?: throw BundleError.InvalidManifest(if (file == "manifest.json") "(document)" else "$file: (document)", "a JSON object")
            restoreNonFinite(obj)
            return Parsed(JsonNode(obj, "", if (file == "manifest.json") "" else file), parser.sawNonFinite)
        }

        /**
         * edgediff/contract.py `restore_nonfinite`: `key: null` with a string `key_reason` is the non-finite number
         * the reason names ("not a number ...", "-infinity ...", anything else +infinity); the `_reason` key goes.
         */
        internal fun restoreNonFinite(value: Any?) {
            when (value) {
                is JSONObject -> {
                    for (k in value.keys().asSequence().toList()) {
                        val reason = value.opt("${k}_reason")
                        if (value.opt(k) == JSONObject.NULL && reason is String) {
                            value.put(k, NonFinite(nonFiniteOf(reason)))
                            value.remove("${k}_reason")
                        }
                    }
                    for (k in value.keys().asSequence().toList()) restoreNonFinite(value.opt(k))
                }
                is JSONArray -> for (i in 0 until value.length()) restoreNonFinite(value.opt(i))
            }
        }

        private fun nonFiniteOf(reason: String): Double = when {
            reason.startsWith("not a number") -> Double.NaN
            reason.startsWith("-infinity") -> Double.NEGATIVE_INFINITY
            else -> Double.POSITIVE_INFINITY
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

/**
 * A strict JSON parser into org.json's containers, accepting exactly what Python's `json.loads` (and the Swift
 * twin, JSONValue.swift) accepts: no comments, single quotes, unquoted names or trailing commas (org.json's own
 * parser allows all of those), NaN / Infinity / -Infinity as the only extensions, at most 256 levels of nesting
 * (hostile input must not exhaust the stack), no byte-order mark. Integers within +-2^63 are Longs, other
 * numbers Doubles, a non-finite one `NonFinite`; a repeated key keeps the last value, as Python does.
 */
internal class StrictJson(private val text: String, private val file: String) {
    private var index = 0
    private var depth = 0
    var sawNonFinite = false
        private set

    fun document(): Any {
        if (text.startsWith("\uFEFF")) throw failure("a byte-order mark at the start (JSON files are plain UTF-8)")
        val value = value()
        skipWhitespace()
        if (index != text.length) throw failure("unexpected text after the document")
        return value
    }

    private fun failure(detail: String): BundleError {
        var line = 1
        var column = 1
        for (i in 0 until minOf(index, text.length)) {
            if (text[i] == '\n') { line++; column = 1 } else column++
        }
        return BundleError.InvalidJson(file, "$detail at line $line, column $column")
    }

    private fun skipWhitespace() {
        while (index < text.length && text[index].let { it == ' ' || it == '\n' || it == '\r' || it == '\t' }) index++
    }

    private fun consume(literal: String): Boolean {
        if (!text.startsWith(literal, index)) return false
        index += literal.length
        return true
    }

    private fun nonFinite(value: Double): NonFinite {
        sawNonFinite = true
        return NonFinite(value)
    }

    private fun value(): Any {
        skipWhitespace()
        if (index >= text.length) throw failure("unexpected end of data")
        when (text[index]) {
            '{' -> return nested { obj() }
            '[' -> return nested { arr() }
            '"' -> return string()
            't' -> if (consume("true")) return true
            'f' -> if (consume("false")) return false
            'n' -> if (consume("null")) return JSONObject.NULL
            'N' -> if (consume("NaN")) return nonFinite(Double.NaN)
            'I' -> if (consume("Infinity")) return nonFinite(Double.POSITIVE_INFINITY)
            else -> {
                if (consume("-Infinity")) return nonFinite(Double.NEGATIVE_INFINITY)
                return number()
            }
        }
        throw failure("unexpected character")
    }

    private fun <T> nested(body: () -> T): T {
        depth++
        try {
            if (depth > MAX_DEPTH) throw failure("nesting deeper than $MAX_DEPTH levels")
            return body()
        } finally {
            depth--
        }
    }

    private fun obj(): JSONObject {
        index++
        val members = JSONObject()
        skipWhitespace()
        if (consume("}")) return members
        while (true) {
            skipWhitespace()
            if (index >= text.length || text[index] != '"') throw failure("expected a quoted key")
            val key = string()
            skipWhitespace()
            if (!consume(":")) throw failure("expected ':' after a key")
            members.put(key, value())
            skipWhitespace()
            if (consume(",")) continue
            if (consume("}")) return members
            throw failure("expected ',' or '}'")
        }
    }

    private fun arr(): JSONArray {
        index++
        val items = JSONArray()
        skipWhitespace()
        if (consume("]")) return items
        while (true) {
            items.put(value())
            skipWhitespace()
            if (consume(",")) continue
            if (consume("]")) return items
            throw failure("expected ',' or ']'")
        }
    }

    private fun digits(): Int {
        val begin = index
        while (index < text.length && text[index] in '0'..'9') index++
        return index - begin
    }

    private fun number(): Any {
        val start = index
        if (index < text.length && text[index] == '-') index++
        if (index >= text.length || text[index] !in '0'..'9') throw failure("unexpected character")
        if (text[index] == '0') index++ else digits()
        var integral = true
        if (index < text.length && text[index] == '.') {
            index++
            integral = false
            if (digits() == 0) throw failure("expected digits after '.'")
        }
        if (index < text.length && (text[index] == 'e' || text[index] == 'E')) {
            index++
            integral = false
            if (index < text.length && (text[index] == '+' || text[index] == '-')) index++
            if (digits() == 0) throw failure("expected digits in the exponent")
        }
        val literal = text.substring(start, index)
        if (integral) literal.toLongOrNull()?.let { return it }
        val value = literal.toDouble()
        return if (value.isFinite()) value else NonFinite(value) // 1e400 is infinity, as Python reads it
    }

    private fun string(): String {
        index++ // the opening quote
        val out = StringBuilder()
        while (index < text.length) {
            val c = text[index]
            if (c == '"') {
                index++
                return out.toString()
            }
            if (c < ' ') throw failure("control character in a string")
            if (c != '\\') {
                out.append(c)
                index++
                continue
            }
            index++
            if (index >= text.length) break
            val escape = text[index++]
            when (escape) {
                '"' -> out.append('"')
                '\\' -> out.append('\\')
                '/' -> out.append('/')
                'b' -> out.append('\b')
                'f' -> out.append('\u000C')
                'n' -> out.append('\n')
                'r' -> out.append('\r')
                't' -> out.append('\t')
                'u' -> {
                    var code = hex4()
                    if (code in 0xD800 until 0xDC00 && consume("\\u")) {
                        val low = hex4()
                        if (low in 0xDC00 until 0xE000) {
                            code = 0x10000 + ((code - 0xD800) shl 10) + (low - 0xDC00)
                        } else {
                            out.append('\uFFFD') // a lone high surrogate, then an unrelated escape
                            code = low
                        }
                    }
                    // a lone surrogate is no character: U+FFFD, as the Swift twin
                    if (code in 0xD800 until 0xE000) out.append('\uFFFD') else out.appendCodePoint(code)
                }
                else -> throw failure("unknown escape \\$escape")
            }
        }
        throw failure("unterminated string")
    }

    private fun hex4(): Int {
        if (index + 4 > text.length) throw failure("short \\u escape")
        var value = 0
        for (i in index until index + 4) {
            val digit = Character.digit(text[i], 16)
            if (digit < 0 || text[i] > 'f') throw failure("bad \\u escape")
            value = value * 16 + digit
        }
        index += 4
        return value
    }

    companion object {
        const val MAX_DEPTH = 256
    }
}
