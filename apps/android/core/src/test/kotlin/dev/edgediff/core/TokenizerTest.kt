package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource
import org.json.JSONObject
import java.io.File

/** Token ids against the Python runtime's (the `tokenizers` library) as the golden files record them. */
class TokenizerTest {
    @ParameterizedTest
    @ValueSource(strings = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"])
    fun `prompt and negative prompt ids match the golden files`(model: String) {
        val golden = TestEnv.goldenFiles(model)
        val tok = TestEnv.tokenizer(model)
        assertArrayEquals(golden.inputIds, tok.encode(golden.prompt), "input_ids of '${golden.prompt}'")
        golden.negativeInputIds?.let { assertArrayEquals(it, tok.encode(golden.negativePrompt), "negative_input_ids") }
    }

    @ParameterizedTest
    @ValueSource(strings = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"])
    fun `every tokenizer edge case matches`(model: String) {
        val golden = TestEnv.goldenFiles(model)
        val tok = TestEnv.tokenizer(model)
        check(golden.tokenizerCases.size >= 7) { "golden.json lists only ${golden.tokenizerCases.size} tokenizer cases" }
        for ((text, ids) in golden.tokenizerCases) {
            assertArrayEquals(ids, tok.encode(text), "ids of ${text.take(60)}")
        }
    }

    @Test
    fun `special tokens typed in any case match as the Python runtime's under every setup`() {
        // apps/golden/tokenizer/variants.json (make_tokenizer_variants.py), shared with the Swift tests
        val variants = JSONObject(File(TestEnv.golden, "tokenizer/variants.json").readText()).getJSONArray("variants")
        val folder = File(TestEnv.repo, "models/shapes-sd/tokenizer")
        for (i in 0 until variants.length()) {
            val variant = variants.getJSONObject(i)
            val sp = variant.getJSONObject("special")
            val flags = sp.getJSONObject("normalized")
            val special = ClipTokenizer.SpecialTokens(sp.getString("bos"), sp.getString("eos"), sp.getString("unk"), sp.getString("pad"),
                flags.keys().asSequence().associateWith { flags.getBoolean(it) })
            val tok = ClipTokenizer(File(folder, "vocab.json"), File(folder, "merges.txt"), 77, special)
            val cases = variant.getJSONArray("cases")
            for (k in 0 until cases.length()) {
                val case = cases.getJSONObject(k)
                val ids = case.getJSONArray("ids")
                assertArrayEquals(IntArray(ids.length()) { ids.getInt(it) }, tok.encode(case.getString("text")),
                    "${variant.getString("name")}: ${case.getString("text").take(50)}")
            }
        }
    }

    @Test
    fun `special token flags follow the config files`() {
        // SD pads with the plain string <|endoftext|>, so it is matched verbatim; <|startoftext|> is an AddedToken
        // with normalized=true, so a capitalised one still matches after lower-casing (as TokenizerTests.swift).
        val special = ClipTokenizer.SpecialTokens.read(File(TestEnv.repo, "models/shapes-sd/tokenizer"), emptyMap())
        assertEquals(mapOf("<|startoftext|>" to true, "<|endoftext|>" to false), special.normalized)
        val tok = TestEnv.tokenizer("shapes-sd")
        assertEquals(tok.bosId, tok.tokens("<|STARTOFTEXT|>").first())
        assert(tok.tokens("<|ENDOFTEXT|>").first() != tok.eosId)
        assertEquals(3, tok.tokens("x<|endoftext|>y").size)
    }

    @Test
    fun `a manifest override of the pad token is used`() {
        val folder = File(TestEnv.repo, "models/shapes-sd/tokenizer")
        val special = ClipTokenizer.SpecialTokens.read(folder, mapOf("pad_token" to "!"))
        val tok = ClipTokenizer(File(folder, "vocab.json"), File(folder, "merges.txt"), 77, special)
        assertEquals(0, tok.padId) // SD 2.x pads with "!" = id 0
        assertEquals(0, tok.encode("").last())
    }

    @Test
    fun `truncation keeps start and end tokens and pads with the pad token`() {
        val tok = TestEnv.tokenizer("shapes-sd")
        val long = tok.encode("word ".repeat(200))
        assertEquals(77, long.size)
        assertEquals(tok.bosId, long[0])
        assertEquals(tok.eosId, long[76])
        val empty = tok.encode("")
        assertEquals(listOf(tok.bosId, tok.eosId), empty.take(2))
        assert(empty.drop(2).all { it == tok.padId })
    }
}
