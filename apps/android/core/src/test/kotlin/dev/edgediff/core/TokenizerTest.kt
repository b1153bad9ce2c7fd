package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource

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
