"""summary.json: one schema (record/summary.py), one writer (record/record.py's RunRecord), a
parent's correction of a dead run's outcome through it, and older summaries read forward."""

from __future__ import annotations

import ast
import json

from athanor.record.folder import RunDir
from athanor.record.record import RunRecord, correct_outcome
from athanor.record.summary import FORMAT_VERSION, Summary
from conftest import ROOT


def test_a_correction_goes_through_the_schema_and_keeps_the_rest(tmp_path):
    run = RunDir(tmp_path / "run")
    RunRecord(run).start(command="train", host="h")
    correct_outcome(run, "pruned", "stopped early by the pruner")
    summary = run.read_summary()
    assert (summary["status"], summary["error"]) == ("pruned", "stopped early by the pruner")
    assert summary["format_version"] == FORMAT_VERSION
    assert (summary["command"], summary["host"]) == ("train", "h")
    assert set(summary) == set(Summary().to_json())  # every field, and no other


def test_a_version_1_summary_is_read_forward_with_its_time_as_one_segment(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    old = {"status": "interrupted", "started": "2026-01-01T00:00:00", "wall_time_s": 12.5}
    run.summary.write_text(json.dumps({**old, "nonfinite": ["best.val/loss=nan"]}))
    correct_outcome(run, "failed", "rank 1 died")
    summary = run.read_summary()
    assert summary["format_version"] == FORMAT_VERSION and summary["status"] == "failed"
    assert [s["seconds"] for s in summary["segments"]] == [12.5]
    assert "nonfinite" not in summary  # that list is written beside, for this file's values


def test_no_correction_for_a_run_that_never_started(tmp_path):
    run = RunDir(tmp_path / "run")
    correct_outcome(run, "failed", "x")
    assert not run.path.exists()


def test_only_the_run_record_writes_summary_json():
    # a write of summary.json anywhere else would bypass the schema: look for every call that
    # writes JSON and names the summary path
    writers = []
    for path in sorted((ROOT / "src" / "athanor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _writes(node) and "summary" in ast.unparse(node):
                writers.append(str(path.relative_to(ROOT / "src")))
    assert set(writers) == {"athanor/record/record.py"}


def _writes(call: ast.Call) -> bool:
    name = ast.unparse(call.func)
    return name.endswith(("write_json_atomic", "write_text", "json.dump", "write_bytes"))
