package dev.edgediff.core

import org.json.JSONObject
import java.io.File
import java.text.Normalizer
import java.util.Locale
import java.util.PriorityQueue
import java.util.regex.Pattern

/**
 * CLIP's byte-level BPE tokenizer, reproducing what the Python runtime builds with the `tokenizers` library
 * (edgediff/runtime/tokenizer.py), step for step:
 *
 * 1. special tokens matched verbatim in the raw text (those whose `normalized` flag is false), leftmost-longest;
 * 2. each remaining piece normalized: NFC, runs of Unicode whitespace -> one space, lower-cased per code point;
 * 3. special tokens with `normalized` true matched in the normalized pieces;
 * 4. CLIP's split regex (contractions, letter runs, single digits, other-symbol runs; whitespace dropped),
 *    then GPT-2's regex inside each piece (the ByteLevel pre-tokenizer's own split: it cuts a typed
 *    "<|endoftext|>" that CLIP's regex kept whole into "<|", "endoftext", "|>");
 * 5. each piece's UTF-8 bytes mapped to printable characters (GPT-2's bytes_to_unicode), `</w>` appended to
 *    the last one, then BPE merges applied lowest rank first, leftmost first (the `tokenizers` merge queue);
 * 6. `<|startoftext|> ids <|endoftext|>`, truncated to max_length and padded with the pad token.
 */
class ClipTokenizer(
    vocabFile: File,
    mergesFile: File,
    val maxLength: Int = 77,
    special: SpecialTokens = SpecialTokens.read(vocabFile.parentFile, emptyMap()),
) {
    /** The four special-token roles and, per distinct string, whether it is matched after normalization. */
    data class SpecialTokens(
        val bos: String = "<|startoftext|>",
        val eos: String = "<|endoftext|>",
        val unk: String = "<|endoftext|>",
        val pad: String = "<|endoftext|>",
        val normalized: Map<String, Boolean> = emptyMap(),
    ) {
        companion object {
            private val ROLES = listOf("bos", "eos", "unk", "pad") // transformers registers them in this order

            /**
             * tokenizer_config.json, then special_tokens_map.json (which wins), then `overrides` (the manifest's
             * tokenizer section); an AddedToken dict keeps its `normalized` flag, a plain string is matched
             * verbatim, and when roles share one string the later role's flag wins (SD pads with <|endoftext|>).
             */
            fun read(folder: File?, overrides: Map<String, String>): SpecialTokens {
                val found = HashMap<String, Pair<String, Boolean>>()
                val sources = ArrayList<JSONObject>()
                for (name in listOf("tokenizer_config.json", "special_tokens_map.json")) {
                    val file = folder?.let { File(it, name) } ?: continue
                    if (!file.isFile) continue
                    sources += JsonNode.parse(file.readText(), "tokenizer/$name").root.obj
                }
                sources += JSONObject(overrides as Map<*, *>)
                for (src in sources) {
                    for (role in ROLES) {
                        when (val v = src.opt("${role}_token")) {
                            is String -> found[role] = v to false
                            is JSONObject -> (v.opt("content") as? String)?.let { found[role] = it to (v.opt("normalized") == true) }
                        }
                    }
                }
                val defaults = SpecialTokens()
                val texts = ROLES.associateWith { role ->
                    found[role]?.first ?: when (role) {
                        "bos" -> defaults.bos; "eos" -> defaults.eos; "unk" -> defaults.unk; else -> defaults.pad
                    }
                }
                val flags = LinkedHashMap<String, Boolean>()
                for (role in ROLES) flags[texts.getValue(role)] = found[role]?.second ?: false
                return SpecialTokens(texts.getValue("bos"), texts.getValue("eos"), texts.getValue("unk"), texts.getValue("pad"), flags)
            }
        }
    }

    private val vocab: Map<String, Int>
    private val merges: HashMap<Long, Long> // (leftId, rightId) -> (rank, mergedId)
    private val rawSpecials: List<String>
    private val normalizedSpecials: List<String>
    val bosId: Int
    val eosId: Int
    val padId: Int
    private val unkId: Int
    private val cache = HashMap<String, IntArray>()

    init {
        if (maxLength < 2) throw BundleError.InvalidManifest("tokenizer.max_length", "an integer of at least 2")
        if (!vocabFile.isFile) throw BundleError.MissingFile(vocabFile.path)
        if (!mergesFile.isFile) throw BundleError.MissingFile(mergesFile.path)
        val vocabJson = StrictJson(vocabFile.readText(), vocabFile.name).document() as? JSONObject
            ?: throw BundleError.InvalidManifest(vocabFile.name, "an object of token -> id")
        val map = HashMap<String, Int>(vocabJson.length() * 2)
        for (key in vocabJson.keys()) {
            map[key] = JsonNode.asInt(vocabJson.opt(key)) ?: throw BundleError.InvalidManifest("${vocabFile.name}: $key", "an integer id")
        }
        vocab = map
        merges = HashMap()
        var rank = 0
        mergesFile.readLines(Charsets.UTF_8).forEachIndexed { lineNo, line ->
            if (line.isEmpty() || line.startsWith("#version")) return@forEachIndexed
            val parts = line.trim().split(WHITESPACE)
            if (parts.size != 2) return@forEachIndexed
            fun id(token: String) = vocab[token]
                ?: throw BundleError.InvalidManifest("${mergesFile.name} line ${lineNo + 1}", "tokens that are in vocab.json ('$token' is not)")
            val key = (id(parts[0]).toLong() shl 32) or (id(parts[1]).toLong() and 0xffffffffL)
            merges[key] = (rank.toLong() shl 32) or (id(parts[0] + parts[1]).toLong() and 0xffffffffL)
            rank++
        }
        fun specialId(token: String) = vocab[token]
            ?: throw BundleError.InvalidManifest("tokenizer special token '$token'", "a token of vocab.json")
        bosId = specialId(special.bos)
        eosId = specialId(special.eos)
        padId = specialId(special.pad)
        unkId = specialId(special.unk)
        val all = listOf(special.bos, special.eos, special.unk, special.pad).distinct()
        rawSpecials = all.filter { special.normalized[it] != true }
        normalizedSpecials = all.filter { special.normalized[it] == true }
    }

    /** BPE ids of `text` without the start/end tokens, truncation or padding. */
    fun tokens(text: String): List<Int> {
        val out = ArrayList<Int>()
        for ((piece, isSpecial) in splitSpecial(text, rawSpecials)) {
            if (isSpecial) {
                out += vocab.getValue(piece); continue
            }
            for ((normPiece, isSpecial2) in splitSpecial(normalize(piece), normalizedSpecials)) {
                if (isSpecial2) {
                    out += vocab.getValue(normPiece); continue
                }
                val m = CLIP_SPLIT.matcher(normPiece)
                while (m.find()) {
                    val b = BYTE_LEVEL_SPLIT.matcher(m.group())
                    while (b.find()) {
                        for (id in bpe(b.group())) out += id
                    }
                }
            }
        }
        return out
    }

    /** `maxLength` ids: BOS, the prompt's ids (truncated), EOS, then padding. */
    fun encode(text: String): IntArray {
        val body = tokens(text).take(maxLength - 2)
        val ids = IntArray(maxLength) { padId }
        ids[0] = bosId
        body.forEachIndexed { i, id -> ids[i + 1] = id }
        ids[body.size + 1] = eosId
        return ids
    }

    private fun normalize(text: String): String {
        val nfc = Normalizer.normalize(text, Normalizer.Form.NFC)
        val collapsed = WHITESPACE_RUN.matcher(nfc).replaceAll(" ")
        // tokenizers lower-cases code point by code point (no final-sigma context), as Rust's char::to_lowercase
        val sb = StringBuilder(collapsed.length)
        var i = 0
        while (i < collapsed.length) {
            val cp = collapsed.codePointAt(i)
            sb.append(String(Character.toChars(cp)).lowercase(Locale.ROOT))
            i += Character.charCount(cp)
        }
        return sb.toString()
    }

    /** Split on `specials` (leftmost, then longest match); returns (piece, isSpecial), dropping empty pieces. */
    private fun splitSpecial(text: String, specials: List<String>): List<Pair<String, Boolean>> {
        if (specials.isEmpty() || text.isEmpty()) return if (text.isEmpty()) emptyList() else listOf(text to false)
        val out = ArrayList<Pair<String, Boolean>>()
        var start = 0
        var i = 0
        while (i < text.length) {
            val match = specials.filter { text.startsWith(it, i) }.maxByOrNull { it.length }
            if (match == null) {
                i++; continue
            }
            if (i > start) out += text.substring(start, i) to false
            out += match to true
            i += match.length
            start = i
        }
        if (start < text.length) out += text.substring(start) to false
        return out
    }

    private fun bpe(piece: String): IntArray = cache.getOrPut(piece) {
        val mapped = piece.toByteArray(Charsets.UTF_8).map { BYTE_TO_CHAR[it.toInt() and 0xff] }
        val ids = IntArray(mapped.size) { i ->
            val symbol = if (i == mapped.size - 1) "${mapped[i]}</w>" else mapped[i].toString()
            vocab[symbol] ?: unkId
        }
        mergeAll(ids)
    }

    /** tokenizers' Word::merge_all: a queue ordered by (rank, position); stale entries are skipped. */
    private fun mergeAll(initial: IntArray): IntArray {
        val n = initial.size
        val ids = initial.copyOf()
        val alive = BooleanArray(n) { true }
        val prev = IntArray(n) { it - 1 }
        val next = IntArray(n) { if (it + 1 < n) it + 1 else -1 }
        data class Merge(val pos: Int, val rank: Int, val newId: Int)
        val queue = PriorityQueue<Merge>(compareBy<Merge>({ it.rank }, { it.pos }))
        fun lookup(a: Int, b: Int): Long? = merges[(a.toLong() shl 32) or (b.toLong() and 0xffffffffL)]
        fun offer(pos: Int, a: Int, b: Int) {
            lookup(a, b)?.let { queue += Merge(pos, (it ushr 32).toInt(), it.toInt()) }
        }
        for (i in 0 until n - 1) offer(i, ids[i], ids[i + 1])
        while (queue.isNotEmpty()) {
            val top = queue.poll()
            if (!alive[top.pos] || next[top.pos] == -1) continue
            val right = next[top.pos]
            val current = lookup(ids[top.pos], ids[right])
            if (current == null || current.toInt() != top.newId) continue
            ids[top.pos] = top.newId
            alive[right] = false
            next[top.pos] = next[right]
            if (next[right] != -1) prev[next[right]] = top.pos
            if (prev[top.pos] >= 0) offer(prev[top.pos], ids[prev[top.pos]], ids[top.pos])
            if (next[top.pos] != -1) offer(top.pos, ids[top.pos], ids[next[top.pos]])
        }
        return ids.filterIndexed { i, _ -> alive[i] }.toIntArray()
    }

    companion object {
        /** edgediff/runtime/tokenizer.py CLIP_SPLIT_PATTERN, with Unicode classes as the Rust regex engine has them. */
        private val CLIP_SPLIT: Pattern = Pattern.compile(
            "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
            Pattern.UNICODE_CHARACTER_CLASS,
        )
        /** tokenizers' ByteLevel pre-tokenizer regex (GPT-2's). */
        private val BYTE_LEVEL_SPLIT: Pattern = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS,
        )
        private val WHITESPACE_RUN: Pattern = Pattern.compile("\\s+", Pattern.UNICODE_CHARACTER_CLASS)
        private val WHITESPACE = Regex("\\s+")

        /** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
        private val BYTE_TO_CHAR: CharArray = run {
            val printable = (('!'.code..'~'.code) + ('¡'.code..'¬'.code) + ('®'.code..'ÿ'.code)).toSet()
            val table = CharArray(256)
            var extra = 0
            for (b in 0 until 256) {
                table[b] = if (b in printable) b.toChar() else (256 + extra++).toChar()
            }
            table
        }

        /** The tokenizer a bundle's manifest describes. */
        fun fromManifest(manifest: BundleManifest): ClipTokenizer {
            val spec = manifest.tokenizer
            val special = SpecialTokens.read(spec.vocab.parentFile, spec.overrides)
            return ClipTokenizer(spec.vocab, spec.merges, spec.maxLength, special)
        }
    }
}
