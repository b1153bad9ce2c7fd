"""Write models/shapes-sd-mobile from the mobile recipe's finished stage-cache entries.

The recipe (`recipes/mobile.toml`) leaves the pruned, 2-step distilled student pipeline and the distilled tiny
decoder in the stage cache; this script lays them out as one ordinary diffusers folder: the student's text
encoder, tokenizer, UNet and scheduler, and an `AutoencoderTiny` VAE whose decoder is the distilled one
(scaling_factor 1.0: it decodes the UNet's latents directly, as TAESD does). The AutoencoderTiny's encoder is
not trained (the recipe distils the decoder only): the folder is for text to image, and `edgediff.json` says so.

    EDGEDIFF_CACHE_DIR=runs/cache python benchmarks/mobile_model.py --out models/shapes-sd-mobile
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def finished(root: Path, kind: str) -> Path:
    found = [p for p in sorted((root / "stages").glob(f"{kind}-*")) if (p / "stage.json").is_file()]
    if len(found) != 1:
        raise SystemExit(f"expected one finished {kind} entry under {root / 'stages'}, found {len(found)} "
                         "(run the mobile recipe to the end first, with one cache)")
    return found[0]


def main() -> None:
    import os

    import torch
    from diffusers import AutoencoderTiny, StableDiffusionPipeline
    from safetensors.torch import load_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("EDGEDIFF_CACHE_DIR", "runs/cache")))
    parser.add_argument("--out", type=Path, default=Path("models/shapes-sd-mobile"))
    args = parser.parse_args()

    distill, tiny = finished(args.cache, "distill"), finished(args.cache, "tiny_decoder")
    tiny_record = json.loads((tiny / "stage.json").read_text())
    arch = tiny_record["arch"]
    pipe = StableDiffusionPipeline.from_pretrained(str(distill / "student"), safety_checker=None,
                                                   requires_safety_checker=False, use_safetensors=True)
    vae = AutoencoderTiny(
        in_channels=3, out_channels=arch["out_channels"], latent_channels=arch["in_channels"],
        encoder_block_out_channels=tuple(arch["block_out_channels"]),
        decoder_block_out_channels=tuple(arch["block_out_channels"]), num_decoder_blocks=tuple(arch["num_blocks"]),
        num_encoder_blocks=(1, 1, 1, 1)[:len(arch["num_blocks"])], act_fn=arch["act_fn"],
        upsample_fn=arch["upsample_fn"], upsampling_scaling_factor=arch["upsampling_scaling_factor"],
        scaling_factor=1.0,
    )
    state = {k.removeprefix("decoder."): v for k, v in load_file(str(tiny / "decoder.safetensors")).items()}
    vae.decoder.load_state_dict(state)
    with torch.no_grad():  # an untrained encoder is zeroed, not random: it cannot pass for a trained one
        for p in vae.encoder.parameters():
            p.zero_()
    pipe.vae = vae
    pipe.register_modules(vae=vae)
    if args.out.exists():
        shutil.rmtree(args.out)
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    shutil.rmtree(args.out / "tokenizer")
    shutil.copytree(distill / "student" / "tokenizer", args.out / "tokenizer")
    defaults = json.loads((distill / "student" / "edgediff.json").read_text())
    distill_record = json.loads((distill / "stage.json").read_text())
    defaults["mobile"] = {
        "recipe": "recipes/mobile.toml",
        "prune": "models/shapes-sd-pruned (latency-searched block removal, recovered)",
        "distill": {"key": distill_record["key"][:20], "train_steps": distill_record["train_steps"],
                    "settings": distill_record["settings"]},
        "tiny_decoder": {"key": tiny_record["key"][:20], "arch": arch, "parameters": tiny_record["parameters"],
                         "train_steps": tiny_record["train_steps"], "teacher_check": tiny_record["teacher_check"]},
        "vae_encoder": "not trained (zeroed): this folder is text to image only",
    }
    (args.out / "edgediff.json").write_text(json.dumps(defaults, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
