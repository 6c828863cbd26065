"""Hypothesis strategies for payloads that fit an OCA JSON schema of the ocpp package.

Covers the keywords those schemas use (type, properties, required, additionalProperties,
items, minItems, maxItems, enum, maxLength, format date-time / uri, multipleOf, minimum,
maximum, $ref into #/definitions); a keyword it does not know fails loudly rather than
generating payloads that do not fit. Written here because hypothesis-jsonschema 0.23 (its
last release) uses internals that current hypothesis no longer has.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

_KNOWN = {
    "$schema", "$id", "id", "title", "description", "comment", "javaType", "tsEnumNames",
    "type", "properties", "required", "additionalProperties", "additionalItems", "items",
    "minItems", "maxItems", "enum", "maxLength", "minLength", "format", "multipleOf",
    "minimum", "maximum", "definitions", "$ref", "default",
}  # fmt: skip
MAX_ITEMS = 3  # lists stay short: the examples go over a websocket
TEXT = st.characters(codec="utf-8", exclude_categories=["Cs"])
# hypothesis takes naive bounds and adds the zone itself.
DATE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2099, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda d: d.isoformat().replace("+00:00", "Z"))


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _node(schema, schema)


def _node(root: dict[str, Any], node: dict[str, Any]) -> st.SearchStrategy[Any]:
    unknown = set(node) - _KNOWN
    assert not unknown, f"schema keywords not covered: {sorted(unknown)}"
    ref = node.get("$ref")
    if ref is not None:
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _node(root, target)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: _node(root, v) for k, v in props.items() if k in required},
            optional={k: _node(root, v) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            _node(root, node["items"]),
            min_size=node.get("minItems", 0),
            max_size=min(node.get("maxItems", MAX_ITEMS), max(MAX_ITEMS, node.get("minItems", 0))),
        )
    if kind == "string":
        if node.get("format") == "date-time":
            return DATE_TIMES
        if node.get("format") == "uri":
            return st.sampled_from(["https://example.org/file", "ftp://example.org/log"])
        return st.text(
            TEXT, min_size=node.get("minLength", 0), max_size=min(node.get("maxLength", 30), 30)
        )
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
    if kind == "number":
        if node.get("multipleOf") == 0.1:
            return st.integers(node.get("minimum", -1000) * 10, 10**5).map(lambda n: n / 10)
        assert "multipleOf" not in node, node
        return st.floats(node.get("minimum", -1e6), node.get("maximum", 1e6))
    if kind == "boolean":
        return st.booleans()
    if kind is None:  # any JSON value (2.0.1 DataTransfer.data)
        return st.recursive(
            st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(TEXT, max_size=10),
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids),
            max_leaves=8,
        )
    raise AssertionError(f"schema type not covered: {kind!r}")
