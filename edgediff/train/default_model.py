"""Train the embedded default model (models/shapes-sd) from scratch: judge, VAE, then text encoder +
UNet jointly, then export a diffusers StableDiffusionPipeline folder.

Every stage checkpoints into the run directory and resumes from there, so an interrupted run
continues where it stopped; a finished stage is skipped on rerun.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn import functional as F

from edgediff.errors import ModelLoadError
from edgediff.shapes import dataset
from edgediff.train import architecture as arch_mod
from edgediff.train.settings import STAGE_NAMES, DiffusionTrainSettings, TrainSettings, VAETrainSettings  # noqa: F401


def _log(run_dir: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with open(run_dir / "train.log", "a") as fh:
        fh.write(line + "\n")


def _save_ckpt(path: Path, payload: dict) -> None:
    """Write atomically so a kill mid-write never leaves a corrupt checkpoint behind."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _load_ckpt(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _rendered_batch(seed: int, start: int, count: int) -> torch.Tensor:
    images, _ = dataset.batch(seed, start, count)
    return torch.from_numpy(dataset.to_tensor_range(images))


# --- stage: judge -------------------------------------------------------------------------------


def stage_judge(s: TrainSettings) -> None:
    from edgediff.shapes import judge as judge_mod

    target = s.output / "judge"
    if (target / judge_mod.WEIGHTS_FILE).is_file():
        _log(s.run_dir, f"judge: already trained in {target}, skipping")
        return
    judge, report = judge_mod.train_judge()
    judge_mod.save_judge(judge, target, report)
    _log(s.run_dir, f"judge: held-out accuracy {json.dumps(report['heldout_accuracy'])} in {report['train_seconds']} s")


# --- stage: vae ---------------------------------------------------------------------------------


def stage_vae(s: TrainSettings) -> None:
    from diffusers import AutoencoderKL
    from tqdm import tqdm

    final = s.run_dir / "vae"
    if (final / "config.json").is_file():
        _log(s.run_dir, "vae: already trained, skipping")
        return
    cfg = s.vae
    torch.manual_seed(s.seed)
    vae = arch_mod.build_vae(s.architecture)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    ckpt_path = s.run_dir / "vae.ckpt"
    step = 0
    if (ckpt := _load_ckpt(ckpt_path)) is not None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        _log(s.run_dir, f"vae: resuming at step {step}")
    vae.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="vae")
    started = time.perf_counter()
    while step < cfg.steps:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        # Fresh samples every step (a dataset seed disjoint from the diffusion latents'), randomly cropped.
        x = _rendered_batch(s.seed + 1, step * cfg.batch_size, cfg.batch_size)
        if cfg.crop < x.shape[-1]:
            off = torch.randint(0, x.shape[-1] - cfg.crop + 1, (2,), generator=torch.Generator().manual_seed(step))
            off = (off // 8) * 8  # keep the 8-pixel latent grid aligned
            x = x[:, :, off[0] : off[0] + cfg.crop, off[1] : off[1] + cfg.crop]
        # Decode the posterior mean: on this budget, sampling noise slows the decoder down far more than
        # it regularises; the KL term below only keeps the latents from drifting in scale.
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mode()).sample
        rec = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        kl = posterior.kl().mean()
        loss = rec + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(rec=f"{rec.item():.4f}", kl=f"{kl.item():.0f}")
        if step % s.checkpoint_every == 0 or step == cfg.steps:
            _save_ckpt(ckpt_path, {"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": step})
    bar.close()
    vae.eval()
    # Scaling factor: 1 / std of the latents the UNet is trained on, as SD measured its own (0.18215).
    with torch.no_grad():
        zs = [vae.encode(_rendered_batch(s.seed + 2, i, 256)).latent_dist.mode() for i in range(0, cfg.scale_samples, 256)]
        z = torch.cat(zs)
        scaling = float(1.0 / z.std())
        x = _rendered_batch(s.seed + 3, 0, 256)
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse = F.mse_loss(recon, x).item()
        psnr = 10 * math.log10(4.0 / mse)
    vae.register_to_config(scaling_factor=round(scaling, 5))
    vae.save_pretrained(final, safe_serialization=True)
    AutoencoderKL.from_pretrained(final)  # fail now, not at export, if it does not round-trip
    stats = {"scaling_factor": scaling, "latent_std": float(z.std()), "latent_mean": float(z.mean()), "recon_psnr_db": psnr}
    (s.run_dir / "vae_stats.json").write_text(json.dumps(stats, indent=2))
    _log(s.run_dir, f"vae: done in {time.perf_counter() - started:.0f} s this session; {json.dumps(stats)}")


# --- stage: decoder -----------------------------------------------------------------------------


def stage_decoder(s: TrainSettings) -> None:
    """Fine-tune the VAE decoder alone on latents of the frozen encoder.

    The latent space (and so the scaling factor and the UNet's training data) is the encoder's, so this
    sharpens decoded images (small stars and triangles especially) without invalidating anything else;
    it can run before, after or alongside the diffusion stage.
    """
    from diffusers import AutoencoderKL
    from tqdm import tqdm

    done = s.run_dir / "decoder_stats.json"
    if done.is_file():
        _log(s.run_dir, "decoder: already fine-tuned, skipping")
        return
    cfg = s.vae
    vae = AutoencoderKL.from_pretrained(s.run_dir / "vae")
    vae.requires_grad_(False)
    decoder_params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in decoder_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(decoder_params, lr=cfg.lr / 2, weight_decay=0.0)
    ckpt_path = s.run_dir / "decoder.ckpt"
    step = 0
    if (ckpt := _load_ckpt(ckpt_path)) is not None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        _log(s.run_dir, f"decoder: resuming at step {step}")

    def psnr() -> float:
        x = _rendered_batch(s.seed + 3, 0, 256)
        with torch.no_grad():
            recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        return 10 * math.log10(4.0 / F.mse_loss(recon, x).item())

    before = psnr()
    bar = tqdm(total=cfg.decoder_steps, initial=step, desc="decoder")
    while step < cfg.decoder_steps:
        x = _rendered_batch(s.seed + 4, step * cfg.batch_size, cfg.batch_size)
        if cfg.crop < x.shape[-1]:
            off = torch.randint(0, x.shape[-1] - cfg.crop + 1, (2,), generator=torch.Generator().manual_seed(step))
            off = (off // 8) * 8
            x = x[:, :, off[0] : off[0] + cfg.crop, off[1] : off[1] + cfg.crop]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder_params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(rec=f"{loss.item():.4f}")
        if step % s.checkpoint_every == 0 or step == cfg.decoder_steps:
            _save_ckpt(ckpt_path, {"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": step})
    bar.close()
    vae.eval()
    after = psnr()
    vae.save_pretrained(s.run_dir / "vae", safe_serialization=True)
    stats = {"recon_psnr_db_before": before, "recon_psnr_db_after": after, "steps": step}
    done.write_text(json.dumps(stats, indent=2))
    vae_stats = json.loads((s.run_dir / "vae_stats.json").read_text())
    vae_stats.update(recon_psnr_db=after, decoder_finetune=stats)
    (s.run_dir / "vae_stats.json").write_text(json.dumps(vae_stats, indent=2))
    _log(s.run_dir, f"decoder: {json.dumps(stats)}")


# --- stage: latents -----------------------------------------------------------------------------


def stage_latents(s: TrainSettings) -> None:
    from diffusers import AutoencoderKL
    from tqdm import tqdm

    out = s.run_dir / "latents.pt"
    if out.is_file():
        _log(s.run_dir, "latents: already encoded, skipping")
        return
    vae = AutoencoderKL.from_pretrained(s.run_dir / "vae").eval()
    n = s.diffusion.latent_samples
    means, stds, captions = [], [], []
    with torch.no_grad():
        for start in tqdm(range(0, n, 500), desc="latents"):
            images, specs = dataset.batch(s.seed, start, min(500, n - start))
            dist = vae.encode(torch.from_numpy(dataset.to_tensor_range(images))).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            captions += [spec.caption for spec in specs]
    tokenizer = _tokenizer()
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    torch.save({"mean": torch.cat(means), "std": torch.cat(stds), "input_ids": ids, "empty_ids": empty}, out)
    _log(s.run_dir, f"latents: encoded {n} images")


def _tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(arch_mod.SD15_TOKENIZER)


# --- stage: diffusion ---------------------------------------------------------------------------


def stage_diffusion(s: TrainSettings) -> None:
    from diffusers import AutoencoderKL, DDPMScheduler
    from tqdm import tqdm

    final = s.run_dir / "diffusion_done.json"
    if final.is_file():
        _log(s.run_dir, "diffusion: already trained, skipping")
        return
    cfg = s.diffusion
    data = torch.load(s.run_dir / "latents.pt", map_location="cpu", weights_only=True)
    scaling = AutoencoderKL.load_config(s.run_dir / "vae")["scaling_factor"]
    noise_sched = DDPMScheduler(**arch_mod.build_scheduler_config())
    alphas = noise_sched.alphas_cumprod.float()

    torch.manual_seed(s.seed)
    unet = arch_mod.build_unet(s.architecture)
    text = arch_mod.build_text_encoder(s.architecture)
    ema_unet = arch_mod.build_unet(s.architecture)
    ema_text = arch_mod.build_text_encoder(s.architecture)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text.state_dict())
    params = list(unet.parameters()) + list(text.parameters())
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(s.seed)
    ckpt_path = s.run_dir / "diffusion.ckpt"
    step = 0
    if (ckpt := _load_ckpt(ckpt_path)) is not None:
        unet.load_state_dict(ckpt["unet"])
        text.load_state_dict(ckpt["text"])
        ema_unet.load_state_dict(ckpt["ema_unet"])
        ema_text.load_state_dict(ckpt["ema_text"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        step = int(ckpt["step"])
        _log(s.run_dir, f"diffusion: resuming at step {step}")
    unet.train()
    text.train()
    n = data["mean"].shape[0]
    bar = tqdm(total=cfg.steps, initial=step, desc="unet+text")
    started = time.perf_counter()
    while step < cfg.steps:
        warm = min(1.0, (step + 1) / cfg.warmup)
        lr = cfg.lr * warm
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        latents = data["mean"][idx] * scaling  # the VAE decoder was trained on posterior means
        ids = data["input_ids"][idx].clone()
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        ids[drop] = data["empty_ids"][0]
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        hidden = text(ids)[0]
        pred = unet(noisy, t, hidden).sample
        snr = a / (1 - a)
        weight = snr.clamp(max=cfg.snr_gamma) / snr
        loss = (weight * (pred - noise).pow(2)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
        if step % s.checkpoint_every == 0 or step == cfg.steps:
            _save_ckpt(
                ckpt_path,
                {
                    "unet": unet.state_dict(),
                    "text": text.state_dict(),
                    "ema_unet": ema_unet.state_dict(),
                    "ema_text": ema_text.state_dict(),
                    "optimizer": opt.state_dict(),
                    "generator": gen.get_state(),
                    "step": step,
                },
            )
            _log(s.run_dir, f"diffusion: step {step}/{cfg.steps} loss {loss.item():.4f}")
    bar.close()
    ema_unet.save_pretrained(s.run_dir / "unet", safe_serialization=True)
    ema_text.save_pretrained(s.run_dir / "text_encoder", safe_serialization=True)
    final.write_text(json.dumps({"steps": step, "session_seconds": round(time.perf_counter() - started, 1)}))
    _log(s.run_dir, f"diffusion: done, {step} steps")


# --- stage: export ------------------------------------------------------------------------------


def reference_scheduler_config() -> dict:
    """The reference sampler shipped in scheduler/: DPM-Solver++ (2M) on SD's training schedule."""
    base = arch_mod.build_scheduler_config()
    return {
        "num_train_timesteps": base["num_train_timesteps"],
        "beta_start": base["beta_start"],
        "beta_end": base["beta_end"],
        "beta_schedule": base["beta_schedule"],
        "prediction_type": base["prediction_type"],
        "steps_offset": base["steps_offset"],
        "timestep_spacing": base["timestep_spacing"],
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "lower_order_final": True,
    }


def export_pipeline(run_dir: Path, output: Path) -> Path:
    """Assemble the diffusers folder from the trained parts (safetensors only) and copy the real tokenizer."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    for part in ("vae", "unet", "text_encoder"):
        if not (run_dir / part / "config.json").is_file():
            raise ModelLoadError(f"{run_dir / part} is missing: run the earlier training stages first")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(run_dir / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(run_dir / "text_encoder"),
        tokenizer=_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(run_dir / "unet"),
        scheduler=DPMSolverMultistepScheduler(**reference_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    output.mkdir(parents=True, exist_ok=True)
    for part in ("vae", "unet", "text_encoder", "scheduler", "tokenizer"):
        shutil.rmtree(output / part, ignore_errors=True)
    pipe.save_pretrained(output, safe_serialization=True)
    # Ship the original CLIP BPE files byte for byte rather than a re-serialised tokenizer.
    shutil.rmtree(output / "tokenizer")
    (output / "tokenizer").mkdir()
    for name in arch_mod.TOKENIZER_FILES:
        shutil.copy2(Path(arch_mod.SD15_TOKENIZER) / name, output / "tokenizer" / name)
    StableDiffusionPipeline.from_pretrained(output, safety_checker=None)  # must load as shipped
    return output


def stage_export(s: TrainSettings) -> None:
    export_pipeline(s.run_dir, s.output)
    size = sum(p.stat().st_size for p in s.output.rglob("*") if p.is_file())
    _log(s.run_dir, f"export: wrote {s.output} ({size / 1e6:.2f} MB including judge and card)")


def stage_card(s: TrainSettings) -> None:
    from edgediff.train.card import write_card

    write_card(s)


STAGES = {
    "judge": stage_judge,
    "vae": stage_vae,
    "latents": stage_latents,
    "decoder": stage_decoder,
    "diffusion": stage_diffusion,
    "export": stage_export,
    "card": stage_card,
}


def train(settings: TrainSettings) -> None:
    torch.set_num_threads(settings.threads)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    record = asdict(settings)
    (settings.run_dir / "settings.json").write_text(json.dumps(record, indent=2, default=str))
    started = time.perf_counter()
    for name in settings.stages:
        t0 = time.perf_counter()
        STAGES[name](settings)
        _log(settings.run_dir, f"stage {name}: {time.perf_counter() - t0:.0f} s")
    _log(settings.run_dir, f"all requested stages done in {time.perf_counter() - started:.0f} s")
