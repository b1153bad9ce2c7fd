"""Write apps/golden/tokenizer/variants.json: token ids of the golden tokenizer cases under other special-token setups.

    PYTHONPATH=. python apps/golden/tokenizer/make_tokenizer_variants.py

The golden folders cover the default model's setup only (<|startoftext|> matched after lower-casing, <|endoftext|>
as typed, because its pad role is a plain string). Other checkpoints differ: SD 2.x writes every special token as a
plain string (all matched as typed) and pads with "!", some write every one as an AddedToken with normalized true.
Which of those a typed "<|ENDOFTEXT|>" hits decides whether it is one id or the pieces "<|", "endoftext", "|>", so
both app cores are checked against the Python runtime's tokenizer (HF `tokenizers`) under each setup.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.runtime.golden import TOKENIZER_CASES
from edgediff.runtime.tokenizer import CLIPTokenizer, SpecialTokens

REPO = Path(__file__).resolve().parents[3]
FOLDER = REPO / "models" / "shapes-sd" / "tokenizer"
OUT = Path(__file__).with_name("variants.json")
VARIANTS = {
    "every special token as typed, padded with '!' (SD 2.x)": SpecialTokens(pad="!"),
    "every special token after lower-casing": SpecialTokens(normalized=(("<|startoftext|>", True), ("<|endoftext|>", True))),
    "start after lower-casing, end as typed (the default model's)": SpecialTokens(
        normalized=(("<|startoftext|>", True), ("<|endoftext|>", False))),
}


def main() -> None:
    variants = []
    for name, special in VARIANTS.items():
        tok = CLIPTokenizer(FOLDER / "vocab.json", FOLDER / "merges.txt", 77, special)
        variants.append({
            "name": name,
            "special": {"bos": special.bos, "eos": special.eos, "unk": special.unk, "pad": special.pad,
                        "normalized": special.added_tokens()},
            "cases": [{"text": text, "ids": tok(text)} for text in TOKENIZER_CASES],
        })
    OUT.write_text(json.dumps({"format": "edgediff-tokenizer-variants/1", "tokenizer": "models/shapes-sd/tokenizer",
                               "variants": variants}, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
