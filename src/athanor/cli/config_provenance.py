"""Where each value of a composed config came from: conf/train.yaml, a group file (athanor's own
conf/ or the project's), an experiment preset, a group-wide default (config/groups.py), a
command-line override, or a resumed run's saved config.

Hydra keeps no per-key origin, so the composition is replayed: Hydra's own defaults list for
the overrides (``create_defaults_list``, as ``ConfigLoader`` composes) names every config node in merge order,
each is loaded as Hydra loads it (its package applied), and each of its keys is attributed to it,
a later node winning; then the command line's ``key=value`` overrides win over all. Shown by
``train ... --cfg job --provenance`` and ``athanor.compose(..., provenance=True)``, saved in
every run folder as provenance.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from athanor.cli.project import athanor_conf
from athanor.config.flatten import flatten

GROUP_DEFAULTS = "group-wide default (src/athanor/config/groups.py)"


def _file_label(root: str, config_path: str) -> str:
    """``conf/optim/sgd.yaml (athanor)`` or ``<path> (project)``: the file and whose it is."""
    folder = Path(root.split("://", 1)[-1])
    file = folder / f"{config_path}.yaml"
    try:
        shown = str(file.relative_to(Path.cwd()))
    except ValueError:
        shown = str(file)
    if folder.resolve() == athanor_conf().resolve():
        return f"conf/{config_path}.yaml (athanor)"
    return f"{shown} (project)"


def _label(default: Any, loaded: Any, picked: set[str]) -> str | None:
    """How a defaults-list entry is named; None for Hydra's own nodes."""
    path = default.config_path or ""
    if path.startswith("hydra/") or path == "hydra/config":
        return None
    if loaded.path.startswith("structured://"):
        return GROUP_DEFAULTS if path.startswith("group_defaults/") else f"{path} (structured)"
    label = _file_label(loaded.path, path)
    if path.startswith("experiment/"):
        label = f"experiment preset {label}"
    if default.override_key in picked:  # the choice itself was made on the command line
        label += f" [{default.override_key}={path.split('/', 1)[-1]} on the command line]"
    return label


def attribute(config_name: str, overrides: list[str]) -> dict[str, str]:
    """dotted key (a leaf, or a list/dict set whole) -> where its value came from, for the
    running Hydra (a Hydra app, or inside ``initialize_config_dir``)."""
    from hydra._internal.defaults_list import create_defaults_list
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not GlobalHydra.instance().is_initialized():  # called outside a Hydra app: compose's way
        from hydra import initialize_config_dir

        with initialize_config_dir(config_dir=str(athanor_conf()), version_base="1.3"):
            return attribute(config_name, overrides)
    loader = GlobalHydra.instance().config_loader()
    # one caching repository for the defaults list and the loads: each file is read once
    parsed, repo = loader._parse_overrides_and_create_caching_repo(config_name, overrides)
    defaults = create_defaults_list(
        repo=repo,
        config_name=config_name,
        overrides_list=parsed,
        prepend_hydra=True,  # the primary config may override hydra/launcher (train.yaml does)
        skip_missing=False,
    )
    picked = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    sources: dict[str, str] = {}
    for default in defaults.defaults:
        loaded = loader._load_single_config(default=default, repo=repo)  # as Hydra merges it
        label = _label(default, loaded, picked)
        if label is None:
            continue
        node = OmegaConf.to_container(loaded.config, resolve=False)
        node.pop("hydra", None)
        for key in [k for k in flatten(node) if not _in_defaults_list(k, default.package)]:
            _set(sources, key, label)
    for override in defaults.config_overrides:
        key = override.key_or_group
        if override.is_delete():
            _drop(sources, key)
        else:
            _set(sources, key, f"command line ({override.input_line})")
    return sources


def _in_defaults_list(key: str, package: str | None) -> bool:
    """Whether ``key`` is part of a file's own ``defaults:`` list (Hydra strips it)."""
    prefix = f"{package}.defaults" if package else "defaults"
    return key == prefix or key.startswith(prefix + ".")


def _drop(sources: dict[str, str], key: str) -> None:
    for k in [k for k in sources if k == key or k.startswith(key + ".")]:
        del sources[k]


def _set(sources: dict[str, str], key: str, label: str) -> None:
    """``key``'s value comes from ``label``: so does all below it (a node set whole)."""
    _drop(sources, key)
    sources[key] = label


def source_of(key: str, sources: dict[str, str]) -> str:
    """The source of a leaf: its own entry, else the nearest node above it set whole."""
    while key:
        if key in sources:
            return sources[key]
        key = key.rpartition(".")[0]
    return "unknown"


def provenance(
    config: dict[str, Any], sources: dict[str, str], resumed_from: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every leaf of the (resolved) config: {"value", "from"}. A resumed run's values come from
    its saved config, except those its command line sets."""
    out = {}
    for key, value in flatten(config).items():
        origin = source_of(key, sources)
        if resumed_from and not origin.startswith("command line"):
            origin = f"resume's saved config ({resumed_from})"
        out[key] = {"value": value, "from": origin}
    return out


def table(entries: dict[str, dict[str, Any]]) -> str:
    """``key = value   from`` lines, aligned."""
    rows = [
        (k, repr(e["value"]) if isinstance(e["value"], str) else str(e["value"]), e["from"])
        for k, e in entries.items()
    ]
    kw = max((len(k) for k, _, _ in rows), default=0)
    vw = min(30, max((len(v) for _, v, _ in rows), default=0))
    return "".join(f"{k:<{kw}} = {v:<{vw}}  {f}\n" for k, v, f in rows)


def to_yaml(entries: dict[str, dict[str, Any]]) -> str:
    import yaml

    head = (
        "# where each value of this run's config came from (`train ... --cfg job --provenance`)\n"
    )
    return head + yaml.safe_dump(entries, sort_keys=False)


def save(run_dir: Path, config: dict[str, Any], sources: dict[str, str], resumed: bool) -> None:
    """provenance.yaml in the run folder (a resumed run: its saved config is the source)."""
    from athanor.record.folder import RunDir

    entries = provenance(config, sources, str(config["resume"]) if resumed else None)
    run_dir.mkdir(parents=True, exist_ok=True)  # (Hydra made it, unless called outside Hydra)
    RunDir(run_dir).provenance.write_text(to_yaml(entries))
