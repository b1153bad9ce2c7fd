"""A model folder is untrusted data: check it at the door, before torch is imported.

`check_model_folder` reads every file a conversion will use (model_index.json, the component configs, the
scheduler config, edgediff.json, the tokenizer files, the safetensors headers) and type-checks what the later
stages rely on, so a wrong type, a list where an object belongs, non-UTF-8 bytes, non-JSON, a truncated weights
file or weights of another model fail in about a second with the file, the key and what was expected, instead
of as a torch traceback 40 s in. Nothing here imports code: classes are names checked against an allow-list.

Nothing is read outside the folder: a symlink that leaves it is refused with its path named (a Hugging Face
cache snapshot may link into its own repository's `blobs/`, which is the same download).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgediff.errors import ModelLoadError, UnsupportedError

PIPELINE_PARTS = ("text_encoder", "text_encoder_2", "unet", "vae")
LOADABLE_LIBRARIES = ("diffusers", "transformers")
KNOWN_LIBRARIES = (*LOADABLE_LIBRARIES, "stable_diffusion")  # diffusers.pipelines.stable_diffusion (safety checker)
MODEL_CLASS_NAMES = ("UNet2DConditionModel", "AutoencoderKL", "AutoencoderTiny", "CLIPTextModel",
                     "CLIPTextModelWithProjection")  # edgediff.model.load.MODEL_CLASSES
TOKENIZER_CLASSES = ("CLIPTokenizer", "CLIPTokenizerFast")
SCHEDULER_NAME = re.compile(r"^[A-Za-z_]\w*Scheduler$")
MAX_CHANNELS = 1 << 14  # widths beyond this are a memory bomb, not a model (SDXL's widest is 1280)
MAX_JSON_BYTES = 64 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                      "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
WEIGHT_FILE_STEMS = ("diffusion_pytorch_model", "model")


@dataclass
class FolderFacts:
    """What the door check found: the folder to load, its kind and its parsed configs (keyed by part)."""

    root: Path
    kind: str  # "pipeline", "unet" or "vae"
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # unet, vae, text_encoder, scheduler, edgediff
    index: dict[str, Any] = field(default_factory=dict)
    weight_bytes: int = 0  # on disk, all components: what sizes the output estimate

    def output_bytes_estimate(self) -> int:
        """Roughly what a bundle of this model takes: fp32 artifacts of fp16/fp32 weights, plus room."""
        return 2 * self.weight_bytes + (16 << 20)


# ---- containment ------------------------------------------------------------------------------------------------


def containment_root(folder: Path) -> Path:
    """The folder, or for a Hugging Face cache snapshot (`models--org--name/snapshots/<rev>`) its repository."""
    folder = Path(folder).resolve()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return folder


def check_links(folder: Path) -> None:
    """Refuse any symlink under `folder` whose target lies outside it."""
    root = containment_root(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = Path(os.path.realpath(path))  # never raises (a loop resolves to a path that does not exist)
                if target != root and root not in target.parents:
                    raise ModelLoadError(f"{path} is a symlink to {target}, outside the model folder {folder}; "
                                         "edgediff reads nothing outside a model folder: copy the file in instead")
                if not path.exists():
                    raise ModelLoadError(f"{path} is a broken symlink (or a loop); fix or remove it")


def inside_folder(folder: Path, relative: Any, where: str) -> Path:
    """`folder/relative` for a name read from a file of the folder (a weight shard), refused if it leaves it."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or os.path.isabs(relative):
        raise ModelLoadError(f"{where}: {relative!r} is not a file name inside {folder}")
    root = containment_root(folder)
    path = Path(os.path.realpath(Path(folder) / relative))
    if root not in path.parents:
        raise ModelLoadError(f"{where}: {relative!r} points outside the model folder {folder}; refusing to read it")
    return Path(folder) / relative


# ---- JSON files -------------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """A JSON file of a model folder; -Infinity is allowed (diffusers writes it in scheduler configs)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ModelLoadError(f"{path} is {path.stat().st_size} bytes; a config is far smaller, refusing to parse")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path} is a folder, expected a JSON file") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ModelLoadError(f"{path} nests too deeply to be a config") from None


def read_json_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object at the top level, got {_kind(data)}")
    return data


# ---- typed fields -----------------------------------------------------------------------------------------------

Check = tuple[Callable[[Any], bool], str]


def _pos_int(limit: int = 1 << 31) -> Check:
    return (lambda v: type(v) is int and 0 < v <= limit), f"a positive integer up to {limit}"


def _nonneg_int() -> Check:
    return (lambda v: type(v) is int and v >= 0), "an integer >= 0"


def _number(low: float = -math.inf, high: float = math.inf, inf_ok: bool = False) -> Check:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return False
        return (inf_ok and math.isinf(v)) or (math.isfinite(v) and low <= v <= high)
    return ok, "a finite number" + (f" in [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else "")


def _ints(limit: int = MAX_CHANNELS) -> Check:
    return (lambda v: isinstance(v, list) and bool(v) and len(v) <= 64
            and all(type(x) is int and 0 < x <= limit for x in v)), f"a non-empty list of positive integers <= {limit}"


def _int_or_ints(limit: int = MAX_CHANNELS) -> Check:
    one, many = _pos_int(limit)[0], _ints(limit)[0]
    return (lambda v: one(v) or many(v)), f"a positive integer or a list of them (<= {limit})"


def _strings() -> Check:
    return (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of strings"


def _string(choices: tuple[str, ...] | None = None) -> Check:
    if choices:
        return (lambda v: v in choices), f"one of {', '.join(choices)}"
    return (lambda v: isinstance(v, str)), "a string"


def _boolean() -> Check:
    return (lambda v: isinstance(v, bool)), "true or false"


def _optional(check: Check) -> Check:
    return (lambda v: v is None or check[0](v)), check[1] + " (or null)"


def expect(config: dict[str, Any], path: Path, spec: dict[str, Check], required: tuple[str, ...] = ()) -> None:
    """Each key of `spec` present in `config` passes its check; each `required` key is present."""
    for key in required:
        if key not in config:
            raise ModelLoadError(f"{path}: '{key}' is missing ({spec[key][1]} expected)")
    for key, (ok, expected) in spec.items():
        if key in config and not ok(config[key]):
            raise ModelLoadError(f"{path}: '{key}' must be {expected}, got {_short(config[key])}")


UNET_FIELDS: dict[str, Check] = {
    "in_channels": _pos_int(256), "out_channels": _pos_int(256),
    "sample_size": ((lambda v: _pos_int(4096)[0](v) or (isinstance(v, list) and len(v) == 2
                     and all(_pos_int(4096)[0](x) for x in v))), "a positive integer or [height, width]"),
    "block_out_channels": _ints(), "layers_per_block": _int_or_ints(64), "cross_attention_dim": _int_or_ints(),
    "attention_head_dim": _optional(_int_or_ints()), "norm_num_groups": _optional(_pos_int(MAX_CHANNELS)),
    "down_block_types": _strings(), "up_block_types": _strings(), "time_cond_proj_dim": _optional(_pos_int(4096)),
    "conv_in_kernel": _pos_int(15), "mid_block_type": _optional(_string()),
    "addition_embed_type": _optional(_string()), "addition_time_embed_dim": _optional(_pos_int(4096)),
    "projection_class_embeddings_input_dim": _optional(_pos_int(1 << 16)),
    "transformer_layers_per_block": _optional(_int_or_ints(64)),
}
VAE_KL_FIELDS: dict[str, Check] = {
    "in_channels": _pos_int(64), "out_channels": _pos_int(64), "latent_channels": _pos_int(1024),
    "block_out_channels": _ints(), "layers_per_block": _pos_int(64), "norm_num_groups": _optional(_pos_int(MAX_CHANNELS)),
    "sample_size": UNET_FIELDS["sample_size"], "scaling_factor": _number(1e-6, 1e6),
    "shift_factor": _optional(_number()), "down_block_types": _strings(), "up_block_types": _strings(),
}
VAE_TINY_FIELDS: dict[str, Check] = {
    "in_channels": _pos_int(64), "out_channels": _pos_int(64), "latent_channels": _pos_int(1024),
    "encoder_block_out_channels": _ints(), "decoder_block_out_channels": _ints(),
    "scaling_factor": _number(1e-6, 1e6), "shift_factor": _optional(_number()),
}
TEXT_FIELDS: dict[str, Check] = {
    "hidden_size": _pos_int(MAX_CHANNELS), "intermediate_size": _pos_int(4 * MAX_CHANNELS),
    "num_hidden_layers": _pos_int(256), "num_attention_heads": _pos_int(1024),
    "max_position_embeddings": _pos_int(1 << 16), "vocab_size": _pos_int(1 << 20),
    "projection_dim": _optional(_pos_int(MAX_CHANNELS)), "hidden_act": _string(),
}
SCHEDULER_FIELDS: dict[str, Check] = {
    "_class_name": ((lambda v: isinstance(v, str) and bool(SCHEDULER_NAME.match(v))), "a diffusers scheduler class name"),
    "num_train_timesteps": _pos_int(100_000), "beta_start": _number(0.0, 1.0), "beta_end": _number(0.0, 1.0),
    "beta_schedule": _string(), "prediction_type": _string(("epsilon", "v_prediction", "sample", "flow_prediction")),
    "steps_offset": _nonneg_int(), "timestep_spacing": _string(("leading", "trailing", "linspace")),
    "trained_betas": _optional(((lambda v: isinstance(v, list) and all(_number(0.0, 1.0)[0](x) for x in v)),
                                "a list of numbers in [0, 1]")),
    "solver_order": _pos_int(3), "lambda_min_clipped": _number(inf_ok=True), "original_inference_steps": _pos_int(1000),
    "clip_sample_range": _number(0.0), "timestep_scaling": _number(), "set_alpha_to_one": _boolean(),
    "clip_sample": _boolean(), "skip_prk_steps": _boolean(),
}
EDGEDIFF_FIELDS: dict[str, Check] = {
    "steps": _pos_int(1000), "guidance": _number(0.0, 100.0), "batched_cfg": _boolean(),
    "resolution": ((lambda v: _pos_int(8192)[0](v) and v % 8 == 0), "a positive multiple of 8 up to 8192"),
    "scheduler": SCHEDULER_FIELDS["_class_name"],
    "guidance_embedding": ((lambda v: isinstance(v, dict)), "an object"),
}


# ---- the folder -------------------------------------------------------------------------------------------------


def check_model_folder(path: Path) -> FolderFacts:
    """Find what `path` holds and check every file a conversion reads. Raises ModelLoadError / UnsupportedError."""
    path = Path(path)
    if path.is_file():
        raise UnsupportedError(
            f"{path} is a single file; edgediff loads diffusers folders (model_index.json or config.json). "
            "For a custom network give --module package.module:Class --weights FILE")
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist")
    check_links(path)
    if (path / "model_index.json").exists():
        return _check_pipeline(path)
    if (path / "config.json").exists():
        return _check_single(path)
    parts = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
    if len(parts) == 1:  # a pipeline folder that ships one component only (e.g. bk-sdm-small/unet)
        return _check_single(path / parts[0])
    hint = (f"; it holds the component folders {', '.join(parts)} without model_index.json: pass one of them"
            if parts else "")
    raise ModelLoadError(f"{path} is not a model folder: expected model_index.json (a diffusers pipeline) or "
                         f"config.json (a single diffusers model){hint}")


def _check_pipeline(path: Path) -> FolderFacts:
    index_path = path / "model_index.json"
    index = read_json_object(index_path)
    facts = FolderFacts(path, "pipeline", index=index)
    for key, entry in index.items():  # parts edgediff does not load: still no library outside diffusers' own
        if isinstance(entry, list) and entry and isinstance(entry[0], str) and entry[0] not in KNOWN_LIBRARIES:
            raise UnsupportedError(f"{index_path}: '{key}' names code from {entry[0]!r}; a model folder may only name "
                                   f"classes of {', '.join(KNOWN_LIBRARIES)} (edgediff never imports code a model "
                                   "folder names)")
    for part in (*PIPELINE_PARTS, "tokenizer", "tokenizer_2", "scheduler"):
        entry = index.get(part)
        if entry is None or entry == [None, None]:
            continue
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
            raise ModelLoadError(f"{index_path}: '{part}' must be [library, class] (two strings) or [null, null], "
                                 f"got {_short(entry)}")
        library, class_name = entry
        allowed = TOKENIZER_CLASSES if part.startswith("tokenizer") else MODEL_CLASS_NAMES
        known = (SCHEDULER_NAME.match(class_name) is not None) if part == "scheduler" else class_name in allowed
        if library not in LOADABLE_LIBRARIES or not known:
            raise UnsupportedError(
                f"{index_path}: '{part}' names {library}.{class_name}; edgediff builds only "
                f"{', '.join(allowed) if part != 'scheduler' else 'diffusers schedulers'} from diffusers / "
                "transformers and never imports code a model folder names")
        if part in PIPELINE_PARTS and (path / part).is_dir():
            facts.configs[part] = _check_component(path / part, class_name)
            facts.weight_bytes += sum(f.stat().st_size for f in find_weights(path / part))
    if "unet" not in facts.configs:
        raise ModelLoadError(f"{path}: model_index.json names no unet folder; is this a diffusion pipeline?")
    if (path / "scheduler" / "scheduler_config.json").exists():
        config = read_json_object(path / "scheduler" / "scheduler_config.json")
        expect(config, path / "scheduler" / "scheduler_config.json", SCHEDULER_FIELDS)
        start, end = config.get("beta_start"), config.get("beta_end")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)) and not start < end:
            raise ModelLoadError(f"{path / 'scheduler' / 'scheduler_config.json'}: 'beta_start' ({start}) must be "
                                 f"below 'beta_end' ({end})")
        facts.configs["scheduler"] = config
    if (path / "edgediff.json").exists():
        facts.configs["edgediff"] = read_json_object(path / "edgediff.json")
        expect(facts.configs["edgediff"], path / "edgediff.json", EDGEDIFF_FIELDS)
    for tokenizer in ("tokenizer", "tokenizer_2"):
        if (path / tokenizer).is_dir():
            check_tokenizer(path / tokenizer)
    return facts


def _check_single(path: Path) -> FolderFacts:
    config = read_json_object(path / "config.json")
    class_name = config.get("_class_name", "")
    if class_name not in ("UNet2DConditionModel", "AutoencoderKL", "AutoencoderTiny"):
        raise UnsupportedError(f"{path / 'config.json'}: class {class_name!r} is not supported (supported: "
                               "UNet2DConditionModel, AutoencoderKL, AutoencoderTiny); edgediff never imports code "
                               "from a model folder")
    kind = "unet" if class_name == "UNet2DConditionModel" else "vae"
    return FolderFacts(path, kind, configs={kind: _check_component(path, class_name)},
                       weight_bytes=sum(f.stat().st_size for f in find_weights(path)))


def _check_component(folder: Path, class_name: str) -> dict[str, Any]:
    """The component's config.json, type-checked for its class, and its weights' headers against it."""
    config_path = folder / "config.json"
    config = read_json_object(config_path)
    named = config.get("_class_name")
    if named is not None and named != class_name and class_name.startswith(("UNet", "Autoencoder")):
        raise ModelLoadError(f"{config_path}: '_class_name' is {named!r} but model_index.json says {class_name}")
    spec, required = {
        "UNet2DConditionModel": (UNET_FIELDS, ("block_out_channels",)),
        "AutoencoderKL": (VAE_KL_FIELDS, ("block_out_channels",)),
        "AutoencoderTiny": (VAE_TINY_FIELDS, ()),
    }.get(class_name, (TEXT_FIELDS, ()))
    expect(config, config_path, spec, required)
    check_block_widths(config, config_path)
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if spec is TEXT_FIELDS and isinstance(heads, int) and isinstance(hidden, int) and hidden % heads:
        raise ModelLoadError(f"{config_path}: 'hidden_size' ({hidden}) must be a multiple of "
                             f"'num_attention_heads' ({heads})")
    for weights in find_weights(folder):
        if weights.suffix == ".safetensors":
            check_tensor_shapes(weights, safetensors_header(weights), config, config_path, class_name)
    return config


# ---- weights ----------------------------------------------------------------------------------------------------


def check_block_widths(config: dict[str, Any], config_path: Path) -> None:
    """One width per block type, and norm groups that divide every width: what diffusers would otherwise fail on
    deep inside a constructor, with a message that does not name the file."""
    widths = config.get("block_out_channels") or []
    for types_key in ("down_block_types", "up_block_types"):
        if types_key in config and widths and len(config[types_key]) != len(widths):
            raise ModelLoadError(f"{config_path}: '{types_key}' has {len(config[types_key])} entries but "
                                 f"'block_out_channels' has {len(widths)}")
    groups = config.get("norm_num_groups")
    if isinstance(groups, int) and any(w % groups for w in widths):
        raise ModelLoadError(f"{config_path}: 'norm_num_groups' ({groups}) must divide every 'block_out_channels' "
                             f"entry {widths}")


def find_weights(folder: Path) -> list[Path]:
    """Weight files of one model folder, safetensors first. Sharded checkpoints return every shard (their names,
    read from the index file, must stay inside the folder)."""
    for stem in WEIGHT_FILE_STEMS:
        for suffix in ("safetensors", "bin"):
            index = folder / f"{stem}.{suffix}.index.json"
            if index.exists():
                weight_map = read_json_object(index).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ModelLoadError(f"{index}: 'weight_map' must be a non-empty object of tensor -> file")
                shards = sorted({inside_folder(folder, s, f"{index.name} weight_map") for s in weight_map.values()})
                for shard in shards:
                    if not shard.is_file():
                        raise ModelLoadError(f"{index} names shard {shard.name}, which is missing from {folder}")
                return shards
    for stem in WEIGHT_FILE_STEMS:
        for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors", f"{stem}.bin", f"{stem}.fp16.bin"):
            if (folder / name).is_file():
                return [folder / name]
    return []


def safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) from a safetensors file's header, every tensor checked to lie inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length > min(size - 8, MAX_HEADER_BYTES):
            raise ModelLoadError(f"{path} is not a readable safetensors file (header of {length} bytes in a file of "
                                 f"{size}); it may be truncated: re-copy it")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelLoadError(f"{path} is not a readable safetensors file (its header is not JSON); it may be "
                             "truncated or corrupt: re-copy it") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: the safetensors header is not an object; the file is corrupt")
    data_bytes = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and entry.get("dtype") in SAFETENSORS_DTYPES
              and isinstance(entry.get("shape"), list) and all(type(d) is int and d >= 0 for d in entry["shape"])
              and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
              and all(type(o) is int for o in entry["data_offsets"]))
        if not ok:
            raise ModelLoadError(f"{path}: tensor {name!r} has a malformed header entry {_short(entry)} (expected "
                                 f"dtype in {', '.join(SAFETENSORS_DTYPES)}, shape and data_offsets)")
        start, end = entry["data_offsets"]
        if not 0 <= start <= end <= data_bytes:
            raise ModelLoadError(f"{path} is truncated: tensor {name!r} ends at byte {end} of the data but the file "
                                 f"holds {data_bytes}; re-copy it")
        if end - start != math.prod(entry["shape"]) * SAFETENSORS_DTYPES[entry["dtype"]]:
            raise ModelLoadError(f"{path}: tensor {name!r} ({entry['dtype']} {entry['shape']}) does not match its "
                                 f"{end - start} data bytes; the file is corrupt")
        tensors[name] = (entry["dtype"], list(entry["shape"]))
    return tensors


def check_tensor_shapes(path: Path, tensors: dict[str, tuple[str, list[int]]], config: dict[str, Any],
                        config_path: Path, class_name: str) -> None:
    """The tensors whose shapes follow directly from config keys agree with them (weights of the right model)."""
    widths = config.get("block_out_channels") or [0]
    expected: dict[str, tuple[list[Any], str]] = {}
    if class_name == "UNet2DConditionModel":
        expected["conv_in.weight"] = ([widths[0], config.get("in_channels", 4)], "block_out_channels[0], in_channels")
    elif class_name == "AutoencoderKL":
        expected["decoder.conv_in.weight"] = ([widths[-1], config.get("latent_channels", 4)],
                                              "block_out_channels[-1], latent_channels")
    elif class_name.startswith("CLIPText"):
        hidden = config.get("hidden_size", 512)
        expected["text_model.embeddings.token_embedding.weight"] = ([config.get("vocab_size", 49408), hidden],
                                                                     "vocab_size, hidden_size")
        expected["text_model.embeddings.position_embedding.weight"] = ([config.get("max_position_embeddings", 77),
                                                                        hidden], "max_position_embeddings, hidden_size")
    for name, (dtype, shape) in tensors.items():
        if not dtype.startswith(("F", "BF")) and not name.endswith(("position_ids", "num_batches_tracked")):
            raise ModelLoadError(f"{path}: tensor {name!r} is {dtype}; model weights are floating point")
        if name in expected and shape[:2] != expected[name][0]:
            raise ModelLoadError(f"{path}: tensor {name!r} has shape {shape}, but {config_path} says "
                                 f"{expected[name][0]} ({expected[name][1]}); the weights belong to another model")


# ---- tokenizer --------------------------------------------------------------------------------------------------


def check_tokenizer(folder: Path) -> None:
    """vocab.json (token -> id), merges.txt (UTF-8 lines) and the optional config files are what the runtime and the
    apps parse; a bad one fails here, not in a device's tokenizer."""
    vocab_path = folder / "vocab.json"
    if vocab_path.exists():
        vocab = read_json_object(vocab_path)
        bad = next((k for k, v in vocab.items() if type(v) is not int or v < 0), None)
        if not vocab or bad is not None:
            raise ModelLoadError(f"{vocab_path}: expected a non-empty object of token -> id (integers >= 0)"
                                 + (f", but {bad!r} maps to {_short(vocab[bad])}" if bad is not None else ""))
    merges = folder / "merges.txt"
    if merges.exists():
        raw = merges.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelLoadError(f"{merges} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                                 f"{exc.start})") from None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            config = read_json_object(folder / name)
            for role in ("bos_token", "eos_token", "unk_token", "pad_token"):
                token = config.get(role)
                if token is not None and not isinstance(token, str) and not (
                        isinstance(token, dict) and isinstance(token.get("content"), str)):
                    raise ModelLoadError(f"{folder / name}: '{role}' must be a string or an object with a string "
                                         f"'content', got {_short(token)}")
            length = config.get("model_max_length")
            if length is not None and not _number(1)[0](length):
                raise ModelLoadError(f"{folder / name}: 'model_max_length' must be a positive number, "
                                     f"got {_short(length)}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
