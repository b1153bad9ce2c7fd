"""The runtime's CLIP tokenizer gives the same ids as transformers' CLIPTokenizer (the reference), on a broad set
of prompts, for both pad conventions (SD 1.x pads with <|endoftext|>, SD 2.x with "!")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from edgediff.runtime.tokenizer import CLIPTokenizer, read_special_tokens  # noqa: E402

ARCHITECTURES = Path("/work/shared/architectures")
TOKENIZERS = ["stable-diffusion-v1-5", "stable-diffusion-2-1-base"]

HANDWRITTEN = [
    "", " ", "a photo of a cat", "A PHOTO OF A CAT", "Hello, world!!! What's up?? I'm fine; you'll see.",
    "naïve café résumé — “quotes” ‘single’ …", "日本語のテキスト 東京", "emoji 🐱🚀✨ test",
    "tabs\tand\nnewlines\r\n  multiple   spaces", "<|startoftext|> special <|endoftext|> tokens",
    "<|ENDOFTEXT|> upper special", "<|STARTOFTEXT|>x<|startoftext|>", "Hi!<|endoftext|>!", "a!b!c!!!d", "!", "!!",
    "don't won't can't it's they've we're I'd", "numbers 12345 3.14159 1e-5 0x1F",
    "hyphen-ated under_score sla/sh back\\slash", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "Ω≈ç√∫˜µ≤≥÷ ÅÍÎÏ˝ÓÔ",
    "e\u0301 combining accent", "zero\u200bwidth", "Straße İstanbul ǅ", "#hashtag @mention $100 50% & * ( )",
    "🏳️‍🌈 family 👨‍👩‍👧", "ﬁ ligature ﬀ", "    leading and trailing    ", "<|endoftext|>", "<|endoftext",
    "very long prompt " * 40, "a, " * 100, "x" * 300, "word " * 74, "word " * 75, "word " * 76,
]


def random_prompts(count: int, seed: int = 0) -> list[str]:
    """Seeded prompts mixing ASCII words, punctuation and characters from several Unicode blocks."""
    rng = np.random.default_rng(seed)
    blocks = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
              (0x1F300, 0x1F5FF), (0x2000, 0x206F)]
    prompts = []
    for _ in range(count):
        pieces = []
        for _ in range(int(rng.integers(1, 30))):
            low, high = blocks[int(rng.integers(len(blocks)))]
            word = "".join(chr(int(c)) for c in rng.integers(low, high + 1, size=int(rng.integers(1, 8))))
            pieces.append(word)
        prompts.append(" ".join(pieces))
    return prompts


def all_prompts() -> list[str]:
    captions = [
        f"a {size} {color} {shape} on a {background} background, {where}"
        for size, color, shape, background, where in zip(
            ["small", "medium", "large"] * 4, ["red", "green", "blue", "yellow"] * 3, ["circle", "square", "triangle", "star"] * 3,
            ["white", "black", "purple", "orange"] * 3, ["center", "top left", "bottom right", "top right"] * 3,
        )
    ]
    return HANDWRITTEN + captions + random_prompts(300)


@pytest.mark.parametrize("arch", TOKENIZERS)
def test_ids_equal_transformers(arch):
    folder = ARCHITECTURES / arch / "tokenizer"
    reference = transformers.CLIPTokenizer.from_pretrained(str(folder))
    ours = CLIPTokenizer.from_folder(folder)
    prompts = all_prompts()
    mismatches = []
    for prompt in prompts:
        expected = reference(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        got = ours(prompt)
        assert len(got) == 77
        if got != expected:
            mismatches.append((prompt, expected[:20], got[:20]))
    assert not mismatches, f"{len(mismatches)}/{len(prompts)} prompts differ, first: {mismatches[0]}"


def test_pad_token_follows_the_tokenizer_config():
    sd15 = CLIPTokenizer.from_folder(ARCHITECTURES / "stable-diffusion-v1-5" / "tokenizer")
    sd21 = CLIPTokenizer.from_folder(ARCHITECTURES / "stable-diffusion-2-1-base" / "tokenizer")
    assert (sd15.bos_id, sd15.eos_id, sd15.pad_id) == (49406, 49407, 49407)
    assert (sd21.bos_id, sd21.eos_id, sd21.pad_id) == (49406, 49407, 0)
    assert sd21("a cat")[:5] == [49406, 320, 2368, 49407, 0]


def test_truncation_keeps_bos_and_eos():
    tok = CLIPTokenizer.from_folder(ARCHITECTURES / "stable-diffusion-v1-5" / "tokenizer")
    ids = tok("word " * 200)
    assert len(ids) == 77 and ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(tok("A Photo, of a CAT!")) == "a photo , of a cat !"


def test_manifest_overrides_and_missing_files(tmp_path):
    src = ARCHITECTURES / "stable-diffusion-v1-5" / "tokenizer"
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / name, tmp_path / name)
    special = read_special_tokens(tmp_path, overrides={"pad_token": "!"})
    tok = CLIPTokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt", special=special)
    assert tok.pad_id == 0
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    assert CLIPTokenizer.from_folder(tmp_path).pad_id == 49407
    from edgediff.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="merges.txt"):
        CLIPTokenizer(tmp_path / "vocab.json", tmp_path / "missing" / "merges.txt")
