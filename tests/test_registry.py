"""The Registry: registration, building, and the errors users see for bad names/arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from athanor.config.groups import GroupOptions
from athanor.errors import ConfigError
from athanor.registry import BuilderError, Registry
from athanor.typecheck import Positive, Range


@dataclass(frozen=True)
class WidgetOptions(GroupOptions):
    batch: Annotated[int, Positive] = 1


def make_registry() -> Registry:
    reg: Registry = Registry("widget", runtime=("size",), options=WidgetOptions)

    @reg.register("square")
    def square(
        *,
        size: int,
        scale: Annotated[float, Range(0, 10, low_open=True)] = 1.0,
        tags: list[str] | None = None,
    ) -> dict:
        """A square widget."""
        return {"size": size, "scale": scale, "tags": tags}

    @reg.register("circle", description="round")
    def circle(*, size: int, radius: int) -> dict:
        return {"size": size, "radius": radius}

    return reg


def test_register_build_and_names():
    reg = make_registry()
    assert reg.names() == ["circle", "square"]
    assert reg.build({"name": "square", "scale": 2.0}, size=3) == {
        "size": 3,
        "scale": 2.0,
        "tags": None,
    }
    assert [e.description for e in reg.entries()] == ["round", "A square widget."]


def test_shared_keys_are_not_passed_to_the_builder():
    reg = make_registry()
    entry, kwargs, shared = reg.split({"name": "square", "scale": 2.0, "batch": 8})
    assert entry.name == "square" and kwargs == {"scale": 2.0} and shared == {"batch": 8}
    assert reg.build({"name": "square", "batch": 8}, size=1)["scale"] == 1.0
    assert reg.check({"name": "square", "batch": 8}) == WidgetOptions(batch=8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"scale": 0.0}, r"widget.scale=0.0 is out of range: it must be in \(0, 10\]"),
        ({"scale": 11}, r"widget.scale=11 is out of range"),
        ({"scale": float("nan")}, r"widget.scale=nan is out of range"),
        ({"scale": float("inf")}, r"widget.scale=inf is out of range"),
        ({"batch": 0}, r"widget.batch=0 is out of range: it must be > 0"),
        ({"batch": "abc"}, r"widget.batch='abc' has the wrong type \(str\); expected int"),
        ({"bacth": 2}, r"has no argument 'bacth'.*group-wide keys: batch"),
    ],
)
def test_ranges_and_group_wide_types_are_checked_before_building(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_registry().check({"name": "square", **spec})


def test_duplicate_registration_is_refused():
    reg = make_registry()
    with pytest.raises(ConfigError, match="registered twice") as err:
        reg.register("square")(lambda: None)
    assert str(err.value).count("test_registry") == 2  # both places are named


def test_unknown_name_lists_names_and_suggests_closest():
    with pytest.raises(ConfigError) as err:
        make_registry().build({"name": "sqare"}, size=1)
    text = str(err.value)
    assert "'sqare'" in text and "Did you mean 'square'?" in text and "circle, square" in text


def test_unknown_argument_names_builder_and_valid_arguments():
    with pytest.raises(ConfigError) as err:
        make_registry().check({"name": "square", "scael": 2.0})
    text = str(err.value)
    assert "widget 'square' has no argument 'scael'" in text
    assert "Did you mean 'scale'?" in text and "scale, tags" in text


def test_runtime_argument_in_config_is_refused():
    with pytest.raises(ConfigError, match="size is set by the runner"):
        make_registry().check({"name": "square", "size": 4})


def test_missing_required_argument():
    with pytest.raises(ConfigError, match="needs argument"):
        make_registry().check({"name": "circle"})


@pytest.mark.parametrize("value", ["big", True, [1.0]])
def test_wrong_type_is_refused(value):
    with pytest.raises(ConfigError, match=r"widget.scale=.*wrong type.*expected float"):
        make_registry().check({"name": "square", "scale": value})


def test_int_is_accepted_for_float_and_list_items_are_checked():
    reg = make_registry()
    reg.check({"name": "square", "scale": 2, "tags": ["a"]})
    with pytest.raises(ConfigError, match="widget.tags"):
        reg.check({"name": "square", "tags": [1]})


def test_spec_without_name():
    with pytest.raises(ConfigError, match="`name:` key"):
        make_registry().check({"scale": 1.0})


def test_a_bug_in_athanors_own_builder_stays_a_bug():
    """Only validation makes config errors: a ValueError from athanor's own builder (the typed
    signature let the value through) is a bug, raised as it is, not reworded as the user's
    mistake."""
    reg: Registry = Registry("thing")

    def picky(*, lr: float = 0.1):
        raise ValueError(f"Invalid learning rate: {lr}")

    picky.__module__ = "athanor.optim.fake"  # one of athanor's own builders
    reg.register("picky")(picky)
    with pytest.raises(ValueError, match="Invalid learning rate") as err:
        reg.build({"name": "picky", "lr": -1.0})
    assert not isinstance(err.value, ConfigError)


def test_a_value_the_signature_refuses_is_a_config_error_before_the_builder_runs():
    reg: Registry = Registry("thing")
    called = []

    def picky(*, lr: Annotated[float, Range(0, low_open=True, what="a learning rate")] = 0.1):
        called.append(lr)

    picky.__module__ = "athanor.optim.fake"
    reg.register("picky")(picky)
    with pytest.raises(ConfigError, match=r"thing\.lr"):
        reg.build({"name": "picky", "lr": -1.0})
    assert called == []


def test_a_user_builder_that_raises_keeps_its_traceback():
    reg: Registry = Registry("thing")

    @reg.register("buggy")
    def buggy():
        return {}["missing"]

    with pytest.raises(
        BuilderError, match=r"thing builder 'buggy' \(test_registry\) raised KeyError"
    ) as err:
        reg.build({"name": "buggy"})
    assert isinstance(err.value.__cause__, KeyError)


def test_a_builder_gets_only_the_runtime_arguments_it_names():
    reg: Registry = Registry("thing", runtime=("num_classes", "image_size"))
    reg.register("plain")(lambda *, num_classes: num_classes)
    reg.register("greedy")(lambda **kw: sorted(kw))
    assert reg.build({"name": "plain"}, num_classes=3, image_size=8) == 3
    assert reg.build({"name": "greedy"}, num_classes=3, image_size=8) == [
        "image_size",
        "num_classes",
    ]
