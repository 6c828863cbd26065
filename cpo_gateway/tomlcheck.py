"""A small reader that checks a parsed TOML table key by key.

Every problem is collected (not just the first) as a message naming the file, the dotted
key, what was expected, what was found and, where it helps, a hint.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_toml(path: Path, missing: str = "file not found") -> dict[str, Any]:
    """Parse a TOML file; any problem is a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: {missing}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Missing()
PLACEHOLDERS = frozenset({"changeme", "change-me", "change_me", "todo", "xxx", "<secret>", "..."})


def describe(value: object) -> str:
    """How a found value is shown in an error: its TOML type and a short repr."""
    kind = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


class Table:
    """One TOML table being read; records errors in a shared list."""

    def __init__(self, file: Path, data: dict[str, Any], prefix: str, errors: list[str]) -> None:
        self.file = file
        self.data = data
        self.prefix = prefix
        self.errors = errors
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, expected: str, found: str, hint: str = "") -> None:
        msg = f"{self.file}: {self.key(name)}: expected {expected}, found {found}"
        if hint:
            msg += f" (hint: {hint})"
        self.errors.append(msg)

    def _get(self, name: str, default: Any, expected: str, hint: str) -> Any:
        self._seen.add(name)
        if name in self.data:
            return self.data[name]
        if default is REQUIRED:
            self.error(name, expected, "nothing (the key is missing)", hint)
        return default

    def value(
        self,
        name: str,
        types: type | tuple[type, ...],
        expected: str,
        default: Any = REQUIRED,
        *,
        check: Callable[[Any], bool] | None = None,
        hint: str = "",
    ) -> Any:
        raw = self._get(name, default, expected, hint)
        if name not in self.data:
            return raw
        # bool is an int subclass in Python, never in TOML.
        if isinstance(raw, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.error(name, expected, describe(raw), hint)
            return default if default is not REQUIRED else None
        if not isinstance(raw, types) or (check is not None and not check(raw)):
            self.error(name, expected, describe(raw), hint)
            return default if default is not REQUIRED else None
        return raw

    def string(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        choices: Iterable[str] | None = None,
        hint: str = "",
        allow_empty: bool = False,
    ) -> Any:
        if choices is not None:
            options = tuple(choices)
            return self.value(
                name,
                str,
                "one of " + ", ".join(repr(c) for c in options),
                default,
                check=lambda v: v in options,
                hint=hint,
            )
        value = self.value(
            name,
            str,
            "a non-empty string" if not allow_empty else "a string",
            default,
            check=lambda v: allow_empty or bool(v.strip()),
            hint=hint,
        )
        if isinstance(value, str) and value.strip().lower() in PLACEHOLDERS:
            self.error(name, "a real value", describe(value), "replace the placeholder")
        return value

    def integer(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        lo: int | None = None,
        hi: int | None = None,
        hint: str = "",
    ) -> Any:
        expected = "an integer" + _range(lo, hi)
        return self.value(
            name,
            int,
            expected,
            default,
            check=lambda v: (lo is None or v >= lo) and (hi is None or v <= hi),
            hint=hint,
        )

    def number(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        lo: float | None = None,
        hi: float | None = None,
        hint: str = "",
    ) -> Any:
        expected = "a number" + _range(lo, hi)
        value = self.value(
            name,
            (int, float),
            expected,
            default,
            check=lambda v: (
                math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
            ),
            hint=hint,
        )
        return float(value) if isinstance(value, int | float) else value

    def boolean(self, name: str, default: Any = REQUIRED, *, hint: str = "") -> Any:
        return self.value(name, bool, "true or false", default, hint=hint)

    def table(self, name: str, *, required: bool = False) -> Table | None:
        raw = self._get(name, REQUIRED if required else None, "a table", "")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.error(name, "a table", describe(raw))
            return None
        return Table(self.file, raw, self.key(name), self.errors)

    def tables(self, name: str) -> list[Table]:
        """An array of tables ([[name]]); missing means empty."""
        raw = self._get(name, [], "an array of tables", "")
        if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
            self.error(name, f"an array of tables ([[{self.key(name)}]])", describe(raw))
            return []
        return [
            Table(self.file, t, f"{self.key(name)}[{i}]", self.errors) for i, t in enumerate(raw)
        ]

    def finish(self) -> None:
        """Report keys nobody asked for: typos must not pass silently."""
        for name in self.data:
            if name not in self._seen:
                known = ", ".join(sorted(self._seen)) or "none"
                self.errors.append(
                    f"{self.file}: {self.key(name)}: unknown key (known keys here: {known})"
                )


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" between {lo} and {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""
