"""`name=` becomes one safe path component of the run folder (unicode kept, '/' and length not)."""

from __future__ import annotations

import pytest

from athanor.record.names import MAX_NAME_BYTES, safe_name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mlp_digits", "mlp_digits"),
        ("résumé_学习", "résumé_学习"),
        ("a/b", "a_b"),
        ("..", "run"),
        ("../../etc", "_.._etc"),
        ("tab\tnew\nline", "tab_new_line"),
        ("nul\x00byte", "nul_byte"),
        ("win:*?<>|", "win______"),
        ("", "run"),
    ],
)
def test_names_become_one_safe_component(name, expected):
    assert safe_name(name) == expected


def test_long_names_are_cut_on_a_character_and_stay_distinct():
    a, b = "é" * 300, "é" * 299 + "x"
    short_a, short_b = safe_name(a), safe_name(b)
    assert len(short_a.encode()) <= MAX_NAME_BYTES and short_a != short_b
    assert short_a.startswith("é" * 50) and short_a.encode().decode() == short_a
    assert safe_name(a) == short_a, "the same name always gives the same folder"


def test_the_run_folder_uses_the_safe_name(train, tmp_path):
    name = "exp/" + "ü" * 300
    result = train("data=digits", "model=mlp", "debug=fast", f"name='{name}'")
    folder = result.run_dir
    assert folder.parent.parent == tmp_path / "outputs", "'/' in name= made no nested folder"
    assert folder.name.split("_", 1)[1].startswith("exp_üüü") and len(folder.name.encode()) < 255
    assert "not a safe folder name" in result.output
