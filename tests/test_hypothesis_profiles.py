"""The Hypothesis profiles of tests/conftest.py: ci draws the same examples on every run, fuzz
draws new ones and many more, and no property test pins its count out of their reach."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import HYPOTHESIS_EXAMPLES, examples

TESTS = Path(__file__).resolve().parent


def _drawn(profile: str) -> list[int]:
    seen: list[int] = []

    @settings(settings.get_profile(profile), max_examples=50, database=None)
    @given(st.integers(0, 2**64))
    def draw(value: int) -> None:
        seen.append(value)

    draw()
    return seen


def test_the_ci_profile_draws_the_same_examples_every_run() -> None:
    assert settings.get_profile("ci").derandomize
    assert settings.get_profile("ci").deadline is None
    assert _drawn("ci") == _drawn("ci")


def test_the_fuzz_profile_draws_new_examples_and_more_of_them() -> None:
    fuzz = settings.get_profile("fuzz")
    assert not fuzz.derandomize and fuzz.print_blob and fuzz.deadline is None
    assert fuzz.max_examples > settings.get_profile("ci").max_examples
    # Fifty draws from 2**64 values: the same twice only if the profile were not random.
    assert _drawn("fuzz") != _drawn("fuzz")


def test_a_tests_own_count_scales_with_the_profile() -> None:
    fuzz = settings.get_profile("fuzz")
    assert examples(200, settings.get_profile("ci")) == 200
    assert examples(200, fuzz) == 200 * fuzz.max_examples // HYPOTHESIS_EXAMPLES
    assert examples(5, settings(max_examples=10)) == 1  # a quick profile never asks for none


def pinned_counts(source: str) -> list[int]:
    """Lines where `settings(...)` is given a `max_examples` that is not `examples(n)`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if isinstance(node.func, ast.Name):
            name = node.func.id
        if name != "settings":
            continue
        for keyword in node.keywords:
            if keyword.arg == "max_examples" and not _scaled(keyword.value):
                lines.append(node.lineno)
    return lines


def _scaled(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == examples.__name__
    )


def test_no_property_test_pins_its_count_beyond_the_profiles_reach() -> None:
    # This file's own draws check the profiles: they are no property test.
    others = (p for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name)
    pinned = {p.name: lines for p in others if (lines := pinned_counts(p.read_text("utf-8")))}
    assert pinned == {}, "use max_examples=examples(n) (tests/conftest.py)"


def test_the_pinned_count_rule_sees_a_number_or_a_name() -> None:
    broken = (
        "from hypothesis import settings\nimport hypothesis\n"
        "@settings(max_examples=500)\ndef a(): ...\n"
        "B = hypothesis.settings(deadline=None, max_examples=COUNT)\n"
        "@settings(max_examples=examples(500))\ndef c(): ...\n"
    )
    assert pinned_counts(broken) == [3, 5]
