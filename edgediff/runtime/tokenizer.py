"""CLIP BPE tokenizer from a bundle's vocab.json and merges.txt, built on the `tokenizers` library.

It reproduces transformers' CLIPTokenizer as Stable Diffusion pipelines call it: NFC, whitespace collapsed,
lower-cased, CLIP's word-splitting regex, byte-level BPE with a `</w>` end-of-word suffix; then
`<|startoftext|> ids <|endoftext|>`, truncated to `max_length` and padded with the configured pad token.
The pad token differs between models (SD 1.x pads with <|endoftext|>, SD 2.x with "!" = id 0), so it is
read from the tokenizer's own config files; special tokens typed in a prompt are matched as special tokens,
exactly as transformers does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError

CLIP_SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


_ROLES = ("bos", "eos", "unk", "pad")  # transformers registers special tokens in this order


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens of a CLIP tokenizer, and whether each is matched before or after normalisation.

    `normalized` follows the config files: a token given as an AddedToken dict keeps its "normalized" flag
    (so "<|ENDOFTEXT|>" typed in a prompt may still match once lower-cased), a plain string is matched
    verbatim; when two roles share one string (SD pads with <|endoftext|>) the later role's flag wins.
    """

    bos: str = "<|startoftext|>"
    eos: str = "<|endoftext|>"
    pad: str = "<|endoftext|>"
    unk: str = "<|endoftext|>"
    normalized: tuple[tuple[str, bool], ...] = ()

    def added_tokens(self) -> dict[str, bool]:
        """Each distinct special string -> its `normalized` flag."""
        flags = dict(self.normalized)
        return {getattr(self, role): flags.get(getattr(self, role), False) for role in _ROLES}


def _token_entry(value: Any) -> tuple[str, bool] | None:
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"], bool(value.get("normalized", False))
    if isinstance(value, str):
        return value, False
    raise ModelLoadError(f"a special token must be a string or an object with a string 'content', got {value!r:.60}")


def _read_text(path: Path) -> str:
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"tokenizer file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                             f"{exc.start})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); restore it from the model's tokenizer folder") from None


def read_special_tokens(folder: Path, overrides: dict[str, Any] | None = None) -> SpecialTokens:
    """Special tokens from tokenizer_config.json, then special_tokens_map.json (which wins, as in transformers),
    then explicit `overrides` (e.g. a manifest's tokenizer section)."""
    found: dict[str, tuple[str, bool]] = {}
    sources: list[dict[str, Any]] = []
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.is_file():
            data = _read_json(path)
            if not isinstance(data, dict):
                raise ModelLoadError(f"{path}: expected a JSON object; restore it from the model's tokenizer folder")
            sources.append(data)
    sources.append(overrides or {})
    for data in sources:
        for role in _ROLES:
            entry = _token_entry(data.get(f"{role}_token"))
            if entry is not None:
                found[role] = entry
    defaults = SpecialTokens()
    texts = {role: found[role][0] if role in found else getattr(defaults, role) for role in _ROLES}
    flags: dict[str, bool] = {}
    for role in _ROLES:
        flags[texts[role]] = found[role][1] if role in found else False
    return SpecialTokens(**texts, normalized=tuple(flags.items()))


class CLIPTokenizer:
    """Prompt -> fixed-length list of token ids (what the text encoder's `input_ids` expects)."""

    def __init__(self, vocab_path: Path, merges_path: Path, max_length: int = 77, special: SpecialTokens | None = None):
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        for path in (vocab_path, merges_path):
            if not Path(path).is_file():
                raise ModelLoadError(f"tokenizer file {path} is missing; a bundle carries tokenizer/vocab.json and merges.txt")
        self.max_length = int(max_length)
        self.special = special or read_special_tokens(Path(vocab_path).parent)
        vocab = _read_json(Path(vocab_path))
        if not isinstance(vocab, dict) or not vocab or not all(type(v) is int and v >= 0 for v in vocab.values()):
            raise ModelLoadError(f"{vocab_path}: expected a non-empty object of token -> id (integers >= 0)")
        merges = _read_merges(Path(merges_path))
        try:
            model = BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                        fuse_unk=False, unk_token=self.special.unk)
        except Exception as exc:  # the tokenizers library raises its own exception types
            raise ModelLoadError(f"{vocab_path} and {merges_path} do not make a BPE tokenizer ({exc})") from None
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(
            [AddedToken(text, special=True, normalized=norm) for text, norm in self.special.added_tokens().items()]
        )
        self._tok = tok
        self.bos_id = self._id(self.special.bos)
        self.eos_id = self._id(self.special.eos)
        self.pad_id = self._id(self.special.pad)

    @classmethod
    def from_folder(cls, folder: Path, max_length: int = 77) -> "CLIPTokenizer":
        folder = Path(folder)
        return cls(folder / "vocab.json", folder / "merges.txt", max_length=max_length)

    def _id(self, token: str) -> int:
        value = self._tok.token_to_id(token)
        if value is None:
            raise ModelLoadError(f"special token {token!r} is not in the tokenizer vocabulary; check tokenizer_config.json")
        return int(value)

    def tokens(self, text: str) -> list[int]:
        """BPE ids of `text` without special tokens, truncation or padding."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def __call__(self, text: str) -> list[int]:
        """`max_length` ids: BOS, the prompt's ids (truncated), EOS, then padding."""
        body = self.tokens(text)[: self.max_length - 2]
        ids = [self.bos_id, *body, self.eos_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def decode(self, ids: list[int]) -> str:
        text = self._tok.decode(ids, skip_special_tokens=True)
        return text.replace("</w>", " ").strip()


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for line in _read_text(path).splitlines():
        if not line or line.startswith("#version"):
            continue
        parts = line.split()
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges
