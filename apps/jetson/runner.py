#!/usr/bin/env python3
"""Run an edgediff bundle on a Jetson board (or any Linux box): one prompt, a prompt loop, or a small HTTP endpoint.

Built on edgediff.runtime (numpy + onnxruntime, no PyTorch). ONNX Runtime providers are picked by availability:
TensorRT, then CUDA, then CPU; `--provider` forces one. Every image prints its per-step UNet latency.

    python apps/jetson/runner.py BUNDLE --prompt "a red circle on a blue background" --output out.png
    python apps/jetson/runner.py BUNDLE --loop --output-dir images/
    python apps/jetson/runner.py BUNDLE --serve --port 8080
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

try:
    import edgediff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgediff.cli import OneLineErrorParser, run_guarded  # noqa: E402
from edgediff.commands import _flags  # noqa: E402
from edgediff.errors import EdgediffError, RecipeError  # noqa: E402
from edgediff.outputs import atomic_file, check_output  # noqa: E402
from edgediff.runtime import BundlePipeline, SessionOptions  # noqa: E402

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
MAX_REQUEST_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 2000


def session_options(args: argparse.Namespace, bundle_root: Path | None = None) -> SessionOptions:
    """Providers in preference order with their options (TensorRT engine cache, fp16)."""
    from edgediff.runtime.sessions import available_ort_providers

    available = available_ort_providers()
    if args.provider == "auto":
        providers = available
    else:
        wanted = PROVIDERS[args.provider]
        if wanted not in available:
            raise RecipeError(
                f"--provider {args.provider}: {wanted} is not in this onnxruntime build (available: {', '.join(available)}); "
                "on Jetson install NVIDIA's onnxruntime-gpu wheel for your JetPack (see apps/jetson/README.md)"
            )
        providers = [wanted] + (["CUDAExecutionProvider"] if wanted == PROVIDERS["tensorrt"] and PROVIDERS["cuda"] in available else [])
        providers.append("CPUExecutionProvider")
        providers = list(dict.fromkeys(providers))
    provider_options: dict[str, dict[str, Any]] = {}
    if "TensorrtExecutionProvider" in providers:
        cache = Path(args.trt_cache or (Path.home() / ".cache" / "edgediff" / "trt"))
        cache.mkdir(parents=True, exist_ok=True)
        provider_options["TensorrtExecutionProvider"] = {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": "True" if args.trt_fp16 else "False",
        }
    return SessionOptions(threads=args.threads, providers=providers, provider_options=provider_options)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Runner:
    """Holds one loaded pipeline; generates images and reports per-step latency."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.pipe = BundlePipeline.load(args.bundle, backend=args.backend, options=session_options(args),
                                        verify_checksums=_flags.checksums_wanted(args))
        self.lock = threading.Lock()
        providers = self.providers()
        print(
            f"loaded {self.pipe.manifest.backend} bundle {self.pipe.manifest.root} in {self.pipe.load_ms:.0f} ms"
            + (f" (providers: {', '.join(providers)})" if providers else ""),
            file=sys.stderr,
            flush=True,
        )

    def providers(self) -> list[str]:
        session = self.pipe.unet
        parts = getattr(session, "parts", [session])
        return list(getattr(parts[0], "active_providers", []))

    def generate(self, prompt: str, seed: int, steps: int | None, guidance: float | None, negative: str = ""):
        """One image; prints each UNet call's latency and a summary to stderr."""
        def on_step(i: int, total: int, ms: float) -> None:
            if not self.args.quiet:
                print(f"  step {i + 1:>3}/{total}  unet {ms:8.1f} ms", file=sys.stderr, flush=True)

        with self.lock:
            result = self.pipe.generate(
                prompt, seed=seed, steps=steps, guidance=guidance, negative_prompt=negative, callback=on_step,
                scheduler=self.args.scheduler,
            )
        steps_ms = result.timings.unet_step_ms
        print(
            f"per-step unet latency: median {statistics.median(steps_ms):.1f} ms, p90 {_percentile(steps_ms, 0.9):.1f} ms, "
            f"min {min(steps_ms):.1f} ms, max {max(steps_ms):.1f} ms over {len(steps_ms)} UNet calls "
            f"({result.steps} steps, {result.scheduler})",
            file=sys.stderr,
        )
        print(f"  {result.timings.describe()}", file=sys.stderr, flush=True)
        return result

    def save(self, result, output: Path) -> None:
        from PIL import Image

        with atomic_file(output) as tmp:  # a killed runner leaves no truncated image under the real name
            Image.fromarray(result.image).save(tmp, format=Image.registered_extensions().get(output.suffix.lower(),
                                                                                            "PNG"))
        print(f"wrote {output}", flush=True)


def run_once(runner: Runner, args: argparse.Namespace) -> int:
    result = runner.generate(args.prompt, args.seed, args.steps, args.guidance, args.negative_prompt)
    runner.save(result, args.output)
    if args.timings_json:
        with atomic_file(args.timings_json) as tmp:
            tmp.write_text(json.dumps(_timing_record(args.prompt, args.seed, result), indent=2) + "\n")
    return 0


def _timing_record(prompt: str, seed: int, result) -> dict[str, Any]:
    return {"prompt": prompt, "seed": seed, "unet_step_ms": [round(v, 3) for v in result.timings.unet_step_ms],
            **result.timings.summary()}


def run_loop(runner: Runner, args: argparse.Namespace) -> int:
    """Read prompts from stdin, one per line; write OUTPUT_DIR/0000.png, 0001.png, ..."""
    out = args.output_dir or Path("images")
    print("enter prompts, one per line (Ctrl-D to stop)", file=sys.stderr, flush=True)
    count = 0
    for line in sys.stdin:
        prompt = line.strip()
        if not prompt:
            continue
        result = runner.generate(prompt, args.seed + count, args.steps, args.guidance, args.negative_prompt)
        runner.save(result, out / f"{count:04d}.png")
        count += 1
    return 0


def make_handler(runner: Runner, args: argparse.Namespace, served: list[int]):
    class Handler(BaseHTTPRequestHandler):
        """GET /health; POST /generate {"prompt", "seed", "steps", "guidance", "negative_prompt"} -> image/png."""

        server_version = "edgediff-jetson/1"

        def log_message(self, fmt: str, *values: Any) -> None:
            print(f"{self.address_string()} {fmt % values}", file=sys.stderr, flush=True)

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/health":
                return self._json(404, {"error": "use GET /health or POST /generate"})
            pipe = runner.pipe
            self._json(200, {"status": "ok", "backend": pipe.manifest.backend, "providers": runner.providers(),
                             "latent_shape": list(pipe.latent_shape), "default_steps": pipe.default_steps,
                             "default_guidance": pipe.default_guidance})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/generate":
                return self._json(404, {"error": "use POST /generate"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return self._json(400, {"error": "bad Content-Length"})
            if length <= 0 or length > MAX_REQUEST_BYTES:
                return self._json(413 if length > 0 else 400, {"error": f"send a JSON body of 1..{MAX_REQUEST_BYTES} bytes"})
            try:
                body = json.loads(self.rfile.read(length))
                prompt = str(body["prompt"])[:MAX_PROMPT_CHARS]
                seed = _flags.seed(str(body.get("seed", 0)))
                steps = int(body["steps"]) if body.get("steps") is not None else None
                guidance = _flags.guidance(str(body["guidance"])) if body.get("guidance") is not None else None
                negative = str(body.get("negative_prompt", ""))[:MAX_PROMPT_CHARS]
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError, argparse.ArgumentTypeError) as exc:
                return self._json(400, {"error": f"expected JSON with a 'prompt' string, an integer 'seed' >= 0 and "
                                                 f"a finite 'guidance' ({exc})"})
            if steps is not None and not 1 <= steps <= args.max_steps:
                return self._json(400, {"error": f"steps must be in 1..{args.max_steps}"})
            try:
                result = runner.generate(prompt, seed, steps, guidance, negative)
            except EdgediffError as exc:
                return self._json(400, {"error": str(exc)})
            from PIL import Image

            buffer = BytesIO()
            Image.fromarray(result.image).save(buffer, format="PNG")
            data = buffer.getvalue()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Edgediff-Timings", json.dumps(result.timings.summary()))
            self.end_headers()
            self.wfile.write(data)
            served[0] += 1

    return Handler


def run_server(runner: Runner, args: argparse.Namespace) -> int:
    served = [0]
    server = HTTPServer((args.host, args.port), make_handler(runner, args, served))
    server.timeout = 1.0
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}; anyone on the network can make the board generate images", file=sys.stderr)
    print(f"serving on http://{host}:{port} (GET /health, POST /generate)", flush=True)
    try:
        while args.max_requests is None or served[0] < args.max_requests:
            server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(f"served {served[0]} image(s)", file=sys.stderr, flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="runner.py", description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="bundle folder (DIR/onnxruntime with manifest.json)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prompt", help="generate one image")
    mode.add_argument("--loop", action="store_true", help="read prompts from stdin, one per line")
    mode.add_argument("--serve", action="store_true", help="serve POST /generate over HTTP")
    p.add_argument("--output", type=Path, default=Path("out.png"), help="image file for --prompt")
    p.add_argument("--output-dir", type=Path, help="folder for --loop images (default: images/)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=_flags.seed, default=0)
    p.add_argument("--steps", type=_flags.steps)
    p.add_argument("--guidance", type=_flags.guidance)
    p.add_argument("--scheduler", help="override the bundle's scheduler: ddim, euler, dpm++2m, lcm, pndm")
    p.add_argument("--backend", help="pick one backend when BUNDLE holds several")
    p.add_argument("--provider", choices=["auto", *PROVIDERS], default="auto", help="onnxruntime execution provider")
    p.add_argument("--trt-fp16", action="store_true", help="let TensorRT build fp16 engines")
    p.add_argument("--trt-cache", help="TensorRT engine cache folder (default: ~/.cache/edgediff/trt)")
    p.add_argument("--threads", type=_flags.threads, help="CPU intra-op threads")
    p.add_argument("--host", default="127.0.0.1", help="--serve address (default: localhost only)")
    p.add_argument("--port", type=int, default=8080, help="--serve port (0: any free port)")
    p.add_argument("--max-requests", type=int, help="--serve: exit after this many images")
    p.add_argument("--max-steps", type=int, default=100, help="--serve: largest steps a request may ask for")
    p.add_argument("--timings-json", type=Path, help="--prompt: write per-step timings here")
    p.add_argument("--quiet", action="store_true", help="no per-step lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    _flags.add_checksum_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported as one `error:` line
        return exc.code if isinstance(exc.code, int) else 2
    return run_guarded(lambda: _run(args), debug=args.debug, command="runner")


def _run(args: argparse.Namespace) -> int:
    """Outputs are checked before the bundle is loaded, so a bad path fails in a second, not after the load."""
    if args.prompt is not None:
        check_output(args.output, "file")
        if args.timings_json:
            check_output(args.timings_json, "file", flag="--timings-json")
    elif args.loop:
        check_output(args.output_dir or Path("images"), "folder", flag="--output-dir")
    runner = Runner(args)
    if args.serve:
        return run_server(runner, args)
    if args.loop:
        return run_loop(runner, args)
    return run_once(runner, args)


if __name__ == "__main__":
    sys.exit(main())
