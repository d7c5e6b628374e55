"""Every GPU-only path of athanor, run for real, in one table (also saved as JSON); exit 1 when a
path fails.

    python scripts/gpu_check.py                 # on a GPU server: CUDA, NCCL, every visible GPU
    python scripts/gpu_check.py --cpu-smoke     # the same code paths on CPU, tiny (the suite runs it)

Paths: experiment=cifar10_fast on CIFAR-shaped fake data against a hand loop of the same airbench
model at the same settings (images/s); AMP fp16 with the grad scaler, and bf16; channels_last
with torch.compile; the memory data path on the device; DDP and FSDP over every visible GPU
(NCCL); the pool launcher on real CUDA_VISIBLE_DEVICES. Each path's peak memory is measured in
its own processes (CUDA: max_memory_allocated; CPU: peak RSS) by a sitecustomize hook.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import markdown_table  # noqa: E402  (the bench's table, a sibling script)

# imported by every Python process the checks start (workers included, via PYTHONPATH): at exit
# it appends "pid kind peak_mb CUDA_VISIBLE_DEVICES" to $GPU_CHECK_LOG
PEAK_HOOK = """
import atexit, os, resource, sys

def _gpu_check_peak():
    peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda"
    with open(os.environ["GPU_CHECK_LOG"], "a") as f:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "-") or "none"
        f.write(f"{os.getpid()} {kind} {peak:.1f} {visible}\\n")

if os.environ.get("GPU_CHECK_LOG"):
    atexit.register(_gpu_check_peak)
"""
SAMPLES_PER_S = re.compile(r"step \d+/\d+: .* ([0-9.]+) samples/s")
QUIET = ("logger.progress=plain", "logger.plots=false", "logger.image_grid=false")


@dataclass(frozen=True)
class Mode:
    """What differs between a GPU server and the CPU smoke: sizes, device, process count."""

    cuda: bool
    gpus: int  # processes for DDP/FSDP and slots for the pool (2 on the CPU)
    data: tuple[str, ...]  # CIFAR-shaped fake data
    steps: int  # optimizer steps of the short runs
    hand_steps: int  # timed steps of the hand loop
    batch: int
    model: str  # of the short runs (CPU: an mlp, as fp16 convolutions crawl there)
    # cifar10_fast's LR (per optimizer step) and precision: the preset's 1.5 is tuned for
    # batches of 1024, and its BatchNorm statistics after 3 bf16 steps on CPU give a NaN
    # validation: the smoke runs a smaller LR in fp32 (like the README's CPU smoke run)
    fast_lr: float = 1.5
    fast_bf16: bool = True

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"


def gpu_mode() -> Mode:
    data = ("data=fake", "data.num_train=20480", "data.num_val=2048")
    return Mode(True, torch.cuda.device_count(), data, 40, 40, 1024, "simple_cnn")


CPU_DATA = ("data=fake", "data.num_train=256", "data.num_val=64", "data.batch_size=64")
CPU_SMOKE = Mode(False, 2, CPU_DATA, 3, 3, 64, "mlp", fast_lr=0.05, fast_bf16=False)


@dataclass
class Result:
    path: str
    ok: bool
    seconds: float
    peak_mb: float | None
    detail: str
    figures: dict = field(default_factory=dict)
    skipped: bool = False  # this machine cannot run the path (e.g. DDP with one GPU)


class Skipped(Exception):
    """A path this machine cannot run: said in the table, neither ok nor a failure."""


class Checker:
    """Runs each path in child processes under the peak-memory hook, in one scratch folder."""

    def __init__(self, mode: Mode, work: Path):
        self.mode, self.work = mode, work
        hook = work / "hook"
        hook.mkdir(parents=True, exist_ok=True)
        (hook / "sitecustomize.py").write_text(PEAK_HOOK)
        self.pythonpath = os.pathsep.join([str(hook), str(ROOT / "src")])

    def run(self, name: str, args: list[str], env: dict | None = None) -> tuple[str, list[str]]:
        """One command (``python -m ...``); returns its output and the hook's lines. Raises
        RuntimeError with the output's tail when it fails."""
        log = self.work / f"{name}.peaks"
        log.unlink(missing_ok=True)
        full_env = {
            **os.environ,
            "PYTHONPATH": self.pythonpath,
            "GPU_CHECK_LOG": str(log),
            **(env or {}),
        }
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=self.work,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = " ".join(output.strip().splitlines()[-3:])[-400:]
            raise RuntimeError(f"exit {proc.returncode}: {tail}")
        return output, log.read_text().splitlines() if log.exists() else []

    def train(self, name: str, *overrides: str, env: dict | None = None) -> tuple[str, list[str]]:
        folder = self.work / "runs" / name
        args = ["-m", "athanor.train", *QUIET, f"device={self.mode.device}", *overrides]
        return self.run(name, [*args, f"hydra.run.dir={folder}"], env)

    def summary(self, name: str) -> dict:
        return json.loads((self.work / "runs" / name / "summary.json").read_text())


def peak(lines: list[str]) -> float | None:
    """The largest peak of the processes that measured the device (CUDA) or, without one, RSS."""
    rows = [line.split() for line in lines]
    cuda = [float(r[2]) for r in rows if r[1] == "cuda"]
    rss = [float(r[2]) for r in rows if r[1] == "rss"]
    return max(cuda or rss) if (cuda or rss) else None


def completed(c: Checker, name: str) -> str:
    summary = c.summary(name)
    if summary["status"] != "completed":
        raise RuntimeError(f"run {summary['status']}: {summary.get('error')}")
    return f"{summary['steps']} steps, val/acc {summary['final'].get('val/acc', float('nan')):.3f}"


# -- the paths --------------------------------------------------------------------------------------
def cifar10_fast(c: Checker) -> tuple[str, list[str], dict]:
    """The preset against a hand loop of the same network at the same settings, images/s."""
    m = c.mode
    # a log line (each one syncs the device, as in any run) every quarter of the run: 3 timed
    # windows after the first (compile, warm-up); the preset's 25 would leave none here
    every = max(1, m.steps // 4)
    steps = (f"trainer.max_steps={m.steps}", f"trainer.log_every={every}", "trainer.epochs=100")
    steps += (f"optim.lr={m.fast_lr}", f"trainer.precision={'bf16' if m.fast_bf16 else 32}")
    out, lines = c.train("cifar10_fast", "experiment=cifar10_fast", *m.data, *steps)
    rates = [float(r) for r in SAMPLES_PER_S.findall(out)][1:]  # the first: compile/warm-up
    ours = statistics.median(rates)
    hand = hand_airbench(m)
    figures = {"athanor_images_s": ours, "hand_loop_images_s": hand, "ratio": ours / hand}
    return f"{completed(c, 'cifar10_fast')}; {ours / hand:.2f}x the hand loop", lines, figures


def hand_airbench(m: Mode) -> float:
    """airbench by hand: the model athanor builds, SGD-Nesterov, bf16 autocast (as the run),
    channels_last, label smoothing 0.2, uint8 batches flipped and standardized on the device.
    Images/s."""
    from athanor.models.airbench import airbench

    device = torch.device(m.device)
    model = airbench(num_classes=10, in_channels=3, image_size=32).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=m.fast_lr, momentum=0.85, nesterov=True, weight_decay=1.33e-3
    )
    images = torch.randint(0, 256, (m.batch, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (m.batch,), device=device)
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device).view(1, 3, 1, 1) * 255

    def step() -> None:
        x = images.float()
        x = torch.where(torch.rand(m.batch, 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=m.fast_bf16):
            loss = torch.nn.functional.cross_entropy(model(x), labels, label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.backends.cudnn.benchmark = True  # as athanor sets it for a run on CUDA
    step()  # warm-up (cuDNN autotuning)
    sync = torch.cuda.synchronize if m.cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(m.hand_steps):
        step()
    sync()
    return m.hand_steps * m.batch / (time.perf_counter() - start)


def short_run(name: str, *overrides: str) -> Callable[[Checker], tuple[str, list[str], dict]]:
    """A path that is one short training run of the mode's model with ``overrides``."""

    def check(c: Checker) -> tuple[str, list[str], dict]:
        steps = (f"trainer.max_steps={c.mode.steps}", "trainer.log_every=1", "trainer.epochs=1")
        out, lines = c.train(name, f"model={c.mode.model}", *c.mode.data, *steps, *overrides)
        return completed(c, name), lines, {}

    return check


def amp_fp16(c: Checker) -> tuple[str, list[str], dict]:
    detail, lines, _ = short_run("amp_fp16", "trainer.precision=fp16")(c)
    import torch as t  # the saved grad scaler: enabled, with its scale

    state = t.load(c.work / "runs/amp_fp16/checkpoints/last.pt", weights_only=True)["state"]
    scale = state["grad_scaler"].get("scale") if state["grad_scaler"] else None
    if c.mode.cuda and scale is None:
        raise RuntimeError("fp16 ran without a grad scaler")
    return f"{detail}; grad scale {scale}", lines, {"grad_scale": scale}


def memory_path(c: Checker) -> tuple[str, list[str], dict]:
    detail, lines, _ = short_run("memory_path", "data.loader=memory")(c)
    log = (c.work / "runs/memory_path/train.log").read_text()
    if "data path: memory" not in log:
        raise RuntimeError("the run did not take the memory data path")
    return f"{detail}; data path: memory on {c.mode.device}", lines, {}


def sharded(strategy: str) -> Callable[[Checker], tuple[str, list[str], dict]]:
    def check(c: Checker) -> tuple[str, list[str], dict]:
        n = c.mode.gpus
        if n < 2:  # one process would start no group at all: nothing of NCCL would be checked
            raise Skipped(f"needs 2 GPUs or more; {n} visible")
        name = f"{strategy}_{n}"
        overrides = (f"distributed.nproc_per_node={n}", f"distributed.strategy={strategy}")
        overrides += (f"data.batch_size={32 * n}",)  # the global batch splits evenly over ranks
        if c.mode.cuda and strategy == "fsdp":  # bf16 parameters beside fp32 BatchNorm units
            overrides += ("trainer.precision=bf16",)
        detail, lines, _ = short_run(name, *overrides)(c)
        return f"{detail}; {n} processes ({'nccl' if c.mode.cuda else 'gloo'})", lines, {}

    return check


def pool(c: Checker) -> tuple[str, list[str], dict]:
    """Two sweep jobs through hydra/launcher=pool: each on its own GPU (CUDA_VISIBLE_DEVICES)."""
    m = c.mode
    folder = c.work / "runs" / "pool"
    args = [
        "-m",
        "athanor.train",
        "-m",
        *QUIET,
        "seed=0,1",
        f"model={m.model}",
        *m.data,
        f"trainer.max_steps={m.steps}",
        "trainer.epochs=1",
        f"device={'auto' if m.cuda else 'cpu'}",
        "hydra/launcher=pool",
        f"hydra.sweep.dir={folder}",
    ]
    _, lines = c.run("pool", args)
    seen = sorted({line.split()[3] for line in lines if line.split()[1] == "cuda"})
    if m.cuda and m.gpus > 1 and len(seen) < 2:
        raise RuntimeError(f"the two jobs did not get their own GPU (saw {seen})")
    statuses = [json.loads(p.read_text())["status"] for p in folder.rglob("summary.json")]
    if statuses != ["completed", "completed"]:
        raise RuntimeError(f"jobs ended {statuses}")
    return f"2 jobs completed; CUDA_VISIBLE_DEVICES per job: {seen or 'none (CPU)'}", lines, {}


PATHS: dict[str, Callable[[Checker], tuple[str, list[str], dict]]] = {
    "cifar10_fast vs hand loop": cifar10_fast,
    "amp fp16 + grad scaler": amp_fp16,
    "amp bf16": short_run("amp_bf16", "trainer.precision=bf16"),
    "channels_last + compile": short_run(
        "channels_last_compile", "trainer.channels_last=true", "trainer.compile=true"
    ),
    "memory data path": memory_path,
    "ddp": sharded("ddp"),
    "fsdp": sharded("fsdp"),
    "pool launcher": pool,
}


def check_all(mode: Mode, work: Path, only: list[str] | None = None) -> list[Result]:
    checker = Checker(mode, work)
    results = []
    for name, check in PATHS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        skipped = False
        try:
            detail, lines, figures = check(checker)
            ok, mb = True, peak(lines)
        except Skipped as why:
            detail, ok, mb, figures, skipped = f"skipped: {why}", True, None, {}, True
        except Exception as err:  # noqa: BLE001 - a failing path is a row of the table
            detail, ok, mb, figures = f"FAILED: {type(err).__name__}: {err}", False, None, {}
        seconds = round(time.perf_counter() - start, 1)
        results.append(Result(name, ok, seconds, mb, detail, figures, skipped))
        print(f"{'skip' if skipped else 'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return results


def table(results: list[Result]) -> str:
    head = ("path", "ok", "seconds", "peak MB", "detail")
    rows = [
        (
            r.path,
            "skipped" if r.skipped else "yes" if r.ok else "NO",
            f"{r.seconds:.1f}",
            "-" if r.peak_mb is None else f"{r.peak_mb:.0f}",
            r.detail,
        )
        for r in results
    ]
    return markdown_table(head, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same paths on CPU, tiny")
    parser.add_argument("--out", type=Path, help="JSON file (default outputs/gpu_check/<time>)")
    parser.add_argument("--paths", help=f"comma-separated subset of: {', '.join(PATHS)}")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("No CUDA device here: run on a GPU server, or use --cpu-smoke.", file=sys.stderr)
        return 2
    only = [p.strip() for p in args.paths.split(",")] if args.paths else None
    unknown = sorted(set(only or []) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    mode = CPU_SMOKE if args.cpu_smoke else gpu_mode()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    out = args.out or ROOT / "outputs" / "gpu_check" / f"gpu_check_{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        results = check_all(mode, Path(work), only)
    text = table(results)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if mode.cuda else "cpu"
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
        "device": device,
        "processes": mode.gpus,
        "torch": torch.__version__,
        "results": [asdict(r) for r in results],
        "table": text,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
