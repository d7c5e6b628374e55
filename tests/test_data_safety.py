"""Untrusted and damaged data files, read through the real readers and the real CLI: no file runs
code, no annotation path leaves data.root, and every damaged file is named with its data set."""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from athanor.data.verify import SAMPLE_SIZE, BadDataError
from athanor.errors import ConfigError
from conftest import ROOT
from test_data_formats import (
    load,
    write_cifar10,
    write_csv,
    write_idx,
    write_mnist,
    write_png_tree,
    write_svhn,
)


class _Payload:
    """Pickles as ``os.system("touch <marker>")``: what a crafted batches.meta would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_cifar_pickle_is_refused_without_running(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [_Payload(marker)]}))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload does run if unpickled
    assert (tmp_path / "control").exists()
    with pytest.raises(BadDataError) as err:
        load("cifar10", tmp_path)
    assert not marker.exists(), "the crafted pickle's payload ran"
    message = str(err.value)
    assert str(meta) in message and "data cifar10" in message and "posix.system" in message


def test_crafted_data_batch_is_refused_without_running(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0]}))
    with pytest.raises(BadDataError, match=re.escape(str(batch))):
        load("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar_batches_of_an_older_pickle_protocol_still_load(tmp_path):
    """The real CIFAR files are python-2 era pickles (protocol 2, numpy arrays): admitted."""
    truth = write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    x, y = truth["test"]
    data = {"data": x.reshape(len(x), -1), "labels": y.tolist(), "batch_label": b"test"}
    old = pickle.dumps(data, protocol=2).replace(b"numpy._core.", b"numpy.core.")  # numpy 1 names
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    (folder / "test_batch").write_bytes(old)
    assert load("cifar10", tmp_path).test.labels.tolist() == y.tolist()


@pytest.mark.parametrize("cut", ["half", "empty", "rows"])
def test_a_half_cifar_batch_is_named(tmp_path, cut):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    raw = batch.read_bytes()
    if cut == "rows":  # a whole pickle whose pixels stop half way through the batch
        entry = pickle.loads(raw)
        entry["data"] = entry["data"][:4]
        raw = pickle.dumps(entry)
    batch.write_bytes({"half": raw[: len(raw) // 2], "empty": b"", "rows": raw}[cut])
    with pytest.raises(BadDataError) as err:
        load("cifar10", tmp_path)
    message = str(err.value)
    assert str(batch) in message and "data cifar10" in message and "\n" not in message


def test_mnist_with_a_wrong_magic_number_or_a_short_file_is_named(tmp_path):
    write_mnist(tmp_path, "MNIST")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = images.read_bytes()
    images.write_bytes(bytes([0, 0, 8, 1]) + raw[4:])  # the labels' magic on an images file
    with pytest.raises(BadDataError, match="wrong magic number 00000801") as err:
        load("mnist", tmp_path)
    assert str(images) in str(err.value) and "data mnist" in str(err.value)
    images.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(BadDataError, match="truncated"):
        load("mnist", tmp_path)
    images.write_bytes(b"")
    with pytest.raises(BadDataError, match="empty or truncated"):
        load("mnist", tmp_path)


def test_mnist_images_and_labels_must_agree(tmp_path):
    write_mnist(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(BadDataError, match="20 images but t10k-labels-idx1-ubyte holds 7"):
        load("mnist", tmp_path)


def test_a_truncated_svhn_file_is_named(tmp_path):
    write_svhn(tmp_path)
    mat = tmp_path / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:300])
    with pytest.raises(BadDataError, match=f"data svhn: {re.escape(str(mat))} cannot be read"):
        load("svhn", tmp_path)


def test_labels_outside_the_classes_are_named(tmp_path):
    write_mnist(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.full(20, 12, np.uint8))
    with pytest.raises(BadDataError, match="test labels run from 12 to 12, outside 0..9"):
        load("mnist", tmp_path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "no header"),
        (b"path,label\n\xff\xfe\x00bad,1\n", "not a readable UTF-8 CSV"),
        (b"path,label\na/0.png\n", r"row 1 \(line 2\) .* no 'path' or no 'label'"),
    ],
)
def test_an_annotation_file_that_is_not_a_csv_is_named(tmp_path, content, expected):
    (tmp_path / "rows.csv").write_bytes(content)
    with pytest.raises(ConfigError, match=expected):
        load("csv", tmp_path, "data.annotations=rows.csv", "data.val_split=0.5")


def test_one_class_data_is_refused_with_the_class(tmp_path):
    write_png_tree(tmp_path, ["only"], per_class=4, size=8, seed=1)
    with pytest.raises(BadDataError, match="one class only \\('only'\\)"):
        load("imagefolder", tmp_path, "data.val_split=0.25")
    write_mnist(tmp_path / "m", "MNIST")
    write_idx(
        tmp_path / "m" / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.full(40, 3, np.uint8)
    )
    with pytest.raises(BadDataError, match="one class only \\('3'\\)"):
        load("mnist", tmp_path / "m")


# -- image files: damaged, escaping, verified, skipped -----------------------------------------


def _damage(folder: Path) -> tuple[Path, Path]:
    """Truncate one PNG and empty another; -> (truncated, empty)."""
    truncated, empty = folder / "b" / "1.png", folder / "a" / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    empty.write_bytes(b"")
    return truncated, empty


def test_damaged_images_in_an_imagefolder_are_named_or_skipped(tmp_path, caplog):
    write_png_tree(tmp_path, ["a", "b"], per_class=5, size=8, seed=1)
    truncated, empty = _damage(tmp_path)
    with pytest.raises(BadDataError) as err:
        load("imagefolder", tmp_path, "data.val_split=0.2")
    message = str(err.value)
    assert "data imagefolder" in message and "train index 2" in message and str(empty) in message
    with caplog.at_level(logging.WARNING, logger="athanor.data.verify"):
        bundle = load("imagefolder", tmp_path, "data.val_split=0.2", "data.on_bad_file=skip")
    assert len(bundle.train) + len(bundle.val) == 8
    assert "skipped 2 unreadable file(s)" in caplog.text and str(truncated) in caplog.text
    skipped = {Path(s["file"]).name: s for s in bundle.skipped_files}
    assert set(skipped) == {"1.png", "2.png"}
    assert "empty" in skipped["2.png"]["reason"] and "decoded" in skipped["1.png"]["reason"]
    # the decoder's reason, quoted whole: no C++ source location, not cut off mid-word
    reason = skipped["1.png"]["reason"]
    assert ".cpp:" not in reason and reason.endswith(")") and len(reason) < 240, reason


def test_a_run_lists_the_files_it_skipped_in_its_summary(tmp_path):
    """data.on_bad_file=skip through `train`: the summary names what the run did not train on."""
    from conftest import cli

    write_png_tree(tmp_path / "img", ["a", "b"], per_class=5, size=8, seed=1)
    truncated, empty = _damage(tmp_path / "img")
    data = ("data=imagefolder", f"data.root={tmp_path / 'img'}", "data.val_split=0.2")
    run = cli("athanor.train", *data, "data.on_bad_file=skip", "trainer.max_steps=2", cwd=tmp_path)
    summary = run.summary()
    assert sorted(s["file"] for s in summary["skipped_files"]) == sorted(
        map(str, (truncated, empty))
    )
    assert all(s["reason"] and s["where"] for s in summary["skipped_files"])


def test_damaged_images_in_a_csv_set_are_named_with_their_row(tmp_path):
    write_png_tree(tmp_path / "img", ["a", "b"], per_class=5, size=8, seed=1)
    _damage(tmp_path / "img")
    rows = [(f"img/{c}/{i}.png", c) for c in "ab" for i in range(5)]
    write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(
        BadDataError, match=r"2\.png \(row 3 \(line 4\) of .*train\.csv\): the file is empty"
    ):
        load("csv", tmp_path, "data.annotations=train.csv", "data.val_split=0.2")
    bundle = load(
        "csv", tmp_path, "data.annotations=train.csv", "data.val_split=0.2", "data.on_bad_file=skip"
    )
    assert [s["where"].split(" (")[0] for s in bundle.skipped_files] == ["row 3", "row 7"]


def test_csv_paths_may_not_leave_data_root(tmp_path):
    root = tmp_path / "root"
    write_png_tree(root, ["a", "b"], per_class=2, size=8, seed=1)
    write_png_tree(tmp_path / "outside", ["c"], per_class=1, size=8, seed=2)
    rows = [("a/0.png", "a"), ("b/0.png", "b"), ("../outside/c/0.png", "b")]
    write_csv(root / "dots.csv", rows)
    with pytest.raises(BadDataError, match=r"row 3 \(line 4\) .*outside data.root"):
        load("csv", root, "data.annotations=dots.csv", "data.val_split=0.5")
    (root / "a" / "link.png").symlink_to(tmp_path / "outside" / "c" / "0.png")
    write_csv(root / "link.csv", [*rows[:2], ("a/link.png", "a")])
    with pytest.raises(BadDataError, match=r"row 3 .*'a/link.png', which resolves to .*outside"):
        load("csv", root, "data.annotations=link.csv", "data.val_split=0.5")
    write_csv(root / "abs.csv", [*rows[:2], (str(tmp_path / "outside" / "c" / "0.png"), "a")])
    with pytest.raises(BadDataError, match="outside data.root"):
        load("csv", root, "data.annotations=abs.csv", "data.val_split=0.5")
    (root / "a" / "inner.png").symlink_to(root / "b" / "0.png")  # a link that stays inside: fine
    write_csv(root / "ok.csv", [*rows[:2], ("a/inner.png", "a")])
    inside = load("csv", root, "data.annotations=ok.csv", "data.val_split=0.5")
    assert len(inside.train) + len(inside.val) == 3


def test_verify_all_finds_what_the_sample_misses_and_none_defers_to_training(tmp_path):
    n = SAMPLE_SIZE + 40
    write_png_tree(tmp_path, ["a", "b"], per_class=n // 2, size=4, seed=3)
    from athanor.data.verify import SAMPLE_SEED, _chosen

    unchecked = sorted(set(range(n)) - set(_chosen(n, "sample")))[0]
    bad = sorted(tmp_path.rglob("*.png"))[unchecked]  # listing order: class, then file name
    bad.write_bytes(b"\x89PNG not really")
    assert SAMPLE_SEED, "the sample is seeded: the same files every run"
    bundle = load("imagefolder", tmp_path, "data.val_split=0.1")  # the sample misses it
    assert bundle.skipped_files == []
    with pytest.raises(BadDataError, match=re.escape(str(bad))):
        load("imagefolder", tmp_path, "data.val_split=0.1", "data.verify=all")
    lazy = load("imagefolder", tmp_path, "data.val_split=0.1", "data.verify=none")
    files = lazy.train.dataset.dataset
    with pytest.raises(BadDataError, match=f"{re.escape(str(bad))} .*during training"):
        files[files.paths.index(str(bad))]


def test_bad_option_values_are_refused():
    with pytest.raises(ConfigError, match="verify"):
        load("imagefolder", "x", "data.verify=some")
    with pytest.raises(ConfigError, match="on_bad_file"):
        load("csv", "x", "data.on_bad_file=ignore")


# -- through the CLI: one paragraph, exit 2, listing in the log --------------------------------


def test_cli_names_a_damaged_file_in_one_paragraph(train, tmp_path):
    write_png_tree(tmp_path / "imgs", ["a", "b"], per_class=4, size=8, seed=1)
    _, empty = _damage(tmp_path / "imgs")
    args = ("data=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.val_split=0.25")
    result = train(*args, "model=mlp", "debug=fast", expect=2)
    assert "Traceback" not in result.output and "Config error: data imagefolder:" in result.output
    assert str(empty) in " ".join(result.output.split()), "the message names the empty file"


def test_cli_refuses_a_crafted_cifar_batch_without_running_it(train, tmp_path):
    write_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"
    meta = tmp_path / "data" / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [_Payload(marker)]}))
    result = train("data=cifar10", "data.root=data", "model=mlp", "debug=fast", expect=2)
    assert not marker.exists(), "train data=cifar10 ran the payload"
    assert "Traceback" not in result.output and "batches.meta" in result.output


def test_a_dataloader_worker_keeps_the_message_and_drops_its_traceback(tmp_path):
    import torch

    write_png_tree(tmp_path, ["a", "b"], per_class=2, size=8, seed=1)
    (tmp_path / "a" / "0.png").write_bytes(b"")
    files = load("imagefolder", tmp_path, "data.val_split=0.5", "data.verify=none").train
    loader = torch.utils.data.DataLoader(files.dataset, batch_size=2, num_workers=1)
    with pytest.raises(BadDataError) as err:
        list(loader)
    assert str(err.value).startswith("data imagefolder: ") and "Traceback" not in str(err.value)


def test_no_message_advises_turning_weights_only_off():
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
