"""The `evaluate` command: rebuild a saved model from its checkpoint's own config, measure it on
a split, print a table and write ``eval_<split>_<time>.json`` next to the checkpoint.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import torch

from athanor import plugins
from athanor.data import DataBundle, DataOptions
from athanor.data.pipeline import evaluation_loaders
from athanor.distributed import Dist, resolve_device
from athanor.engine.build import build_data, build_model, validate
from athanor.engine.eval_pass import evaluate, validation_loss
from athanor.engine.parts import bind_task
from athanor.errors import ConfigError
from athanor.metrics.classification import MetricCounts
from athanor.process import collector
from athanor.record import shards
from athanor.record.checkpoints import load_file, saved_progress
from athanor.record.folder import write_json_atomic
from athanor.record.resume import find, load_model_state, without_weights
from athanor.tasks import Task

log = logging.getLogger("athanor")


def checkpoint_path(ckpt: str) -> Path:
    """A .pt file as given; for a run folder its best.pt, else last.pt (newest good file)."""
    path = Path(ckpt).expanduser()
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (folder / name).is_file():
                return folder / name
    if not path.is_file():
        raise ConfigError(
            f"ckpt={ckpt} is neither a checkpoint file nor a run folder with checkpoints/best.pt "
            "or last.pt."
        )
    return path


def load_for_evaluation(ckpt: str) -> tuple[dict[str, Any], Path]:
    """The checkpoint ``ckpt`` names, with plain model weights (a sharded one's are joined)."""
    state, path = _load(ckpt)
    return shards.consolidated(state), path


def _load(ckpt: str) -> tuple[dict[str, Any], Path]:
    path = checkpoint_path(ckpt)
    if path.name in ("best.pt", "last.pt"):
        try:
            return load_file(path), path
        except ConfigError as err:
            log.warning("%s Using the newest good checkpoint instead.", err)
            found = find(str(path.parent), path.parent)
            assert found is not None
            return found
    return load_file(path), path


def model_weights(state: dict[str, Any], which: str, source: Path) -> dict[str, torch.Tensor]:
    parts = state["state"]
    if which == "model":
        return parts["model"]
    if which == "ema":
        if not parts.get("ema"):
            raise ConfigError(f"weights=ema, but {source} holds no EMA (trainer.ema.decay unset).")
        return {k: v for k, v in parts["ema"].items() if k != "n_averaged"}
    raise ConfigError(f"weights={which!r} is not valid; use model or ema.")


def saved_config(state: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A checkpoint's own config, ready to rebuild its run's parts: without model.weights, the
    run's own code imported, the normalization it trained with (``data.mean``/``data.std`` from
    the checkpoint: data.normalize=auto is not measured again), then ``data`` (a user's
    overrides, which win), validated."""
    config = without_weights(state["config"])
    config.setdefault("task", {"name": "classification", "metrics": []})  # saved before tasks
    plugins.load_user_code(config.get("imports"))  # the run's own builders
    saved = state.get("data")  # checkpoints written before the data spec have none
    normalization = (
        {"mean": saved["mean"], "std": saved["std"], "normalize": "dataset"} if saved else {}
    )
    config["data"] = {**config["data"], **normalization, **(data or {})}
    validate(config)
    return config


def saved_run_data(
    config: dict[str, Any], state: dict[str, Any], device: torch.device
) -> tuple[DataBundle, DataOptions, Task]:
    """The checkpoint's data and task as training had them: the task's saved state (e.g.
    regression's target statistics) loaded, and the data checked against the checkpoint's
    record of it (refused when the model's outputs would not fit)."""
    bundle, options = build_data(config)
    task = bind_task(config, bundle, device)
    if state["state"].get("task"):
        task.load_state_dict(state["state"]["task"])
    saved = state.get("data")
    if saved:
        log.info("data: normalized as in training (mean %s, std %s)", saved["mean"], saved["std"])
        _check_fits(saved, bundle)
    return bundle, options, task


def _check_fits(saved: dict[str, Any], bundle: DataBundle) -> None:
    _check_columns(saved.get("columns"), bundle.info.get("columns"))
    if saved["outputs"] != bundle.num_classes:
        raise ConfigError(
            f"The checkpoint's model has {saved['outputs']} outputs (trained on inputs "
            f"{saved['inputs']}), but this data gives {bundle.num_classes}; evaluate it on data "
            "with the same classes or targets."
        )
    if saved["inputs"] != bundle.inputs():
        log.warning(
            "The checkpoint's model was trained on inputs %s; this data gives %s.",
            saved["inputs"],
            bundle.inputs(),
        )


def _check_columns(trained: list[str] | None, found: list[str] | None) -> None:
    """A table run's features by name (one-hot categories included): the file evaluated must
    give the same columns the model was trained on, else each input lands on the wrong weight."""
    if trained is None or found is None or trained == found:
        return
    missing = [c for c in trained if c not in found]
    extra = [c for c in found if c not in trained]
    what = "; ".join(
        filter(
            None,
            [
                f"missing column(s) {', '.join(missing)}" if missing else "",
                f"extra column(s) {', '.join(extra)}" if extra else "",
                "" if missing or extra else "the same columns in another order",
            ],
        )
    )
    raise ConfigError(
        f"The checkpoint's model was trained on the table columns {', '.join(trained)}; this "
        f"file's columns differ: {what}. Evaluate on a file with the training columns (drop the "
        "extra ones with data.drop=[...]; a one-hot column 'name=value' is a category of 'name')."
    )


def evaluate_checkpoint(options: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``options['ckpt']`` on ``options['split']``; returns the written report."""
    state, path = load_for_evaluation(str(options["ckpt"]))
    config = saved_config(state, options.get("data"))
    split = options.get("split", "val")
    if split not in ("val", "test"):
        raise ConfigError(f"split={split!r} is not valid; use val or test.")
    device = resolve_device(str(options.get("device", "auto")), Dist())
    bundle, data_opts, task = saved_run_data(config, state, device)
    if split == "test":
        if bundle.test is None:
            raise ConfigError(
                f"split=test: the data set {config['data']['name']!r} has no test split; use "
                "split=val."
            )
        bundle = copy.copy(bundle)
        bundle.val = bundle.test
    loaders = evaluation_loaders(
        bundle, data_opts, seed=int(config["seed"]), device=device, task=task
    )
    model = build_model(config, bundle)
    load_model_state(model, model_weights(state, str(options.get("weights", "model")), path), path)
    model.to(device)
    collector.start_up_done()  # built: the pass collects as usual (process/collector.py)
    counts = evaluate(
        model,
        loaders.val.epoch(0),
        validation_loss(config["loss"], bundle.num_classes, model).to(device),
        task,
        device,
        tta_flip=bool(options.get("tta_flip", False)),
    )
    report = _report(counts, bundle.class_names, split, path, state, options, config)
    print(_table(report))
    out = path.parent / f"eval_{split}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json_atomic(out, report)
    print(f"written: {out}")
    return report


def _report(
    counts: MetricCounts,
    class_names: list[str],
    split: str,
    path: Path,
    state: dict[str, Any],
    options: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    n = int(counts.count.item())
    per_class = counts.per_class_accuracy() or []
    names = list(class_names) if len(class_names) == len(per_class) else list(range(len(per_class)))
    metrics = {k.split("/", 1)[1]: v for k, v in counts.metrics(split).items()}
    accuracy = counts.accuracy
    top = {}
    if accuracy is not None:  # classification: the top-1/top-5 table rows
        top = {k: accuracy.states[k].item() / max(n, 1) for k in ("top1", "top5")}
    return {
        "checkpoint": str(path),
        "step": saved_progress(state)["step"],
        "epoch": saved_progress(state)["epoch"],
        "split": split,
        "weights": options.get("weights", "model"),
        "samples": n,
        "task": config["task"]["name"],
        "loss": counts.loss_sum.item() / max(n, 1),
        **top,
        "metrics": metrics,
        "per_class": {str(name): acc for name, acc in zip(names, per_class, strict=True)},
        "data": config["data"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['checkpoint']} (epoch {r['epoch']}, step {r['step']}, {r['weights']} weights)",
        f"{r['split']}: {r['samples']} samples",
        f"  {'loss':<12} {r['loss']:.4f}",
    ]
    if "top1" in r:
        lines += [f"  {'top-1':<12} {r['top1']:.4f}", f"  {'top-5':<12} {r['top5']:.4f}"]
    lines += [
        f"  {k:<12} {v:.4f}" for k, v in r["metrics"].items() if k not in ("loss", "acc", "acc5")
    ]
    if r["per_class"]:
        lines.append("  per class:")
        lines += [f"    {name:<10} {acc:.4f}" for name, acc in r["per_class"].items()]
    return "\n".join(lines)
