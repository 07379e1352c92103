"""Backward-compatibility check between two JSON Schema documents (Schema Registry's BACKWARD mode).

``check_backward(old, new)`` answers: can a consumer built on ``new`` read **every** event written under
``old``? It walks both documents side by side (``$ref``/``$defs``, ``anyOf``/``oneOf``/``allOf``, nullable
unions, ``enum``/``const``, ``type``, ``required``, ``properties``, ``additionalProperties``, string, number
and array constraints) and returns one :class:`Incompatibility` per problem, each naming the field (wire
path), a stable rule id and a readable message. An empty list means compatible.

The check is conservative: what it cannot prove compatible (an unknown validation keyword, a changed
``pattern``, ``not``, ``if``/``then``) is reported, never silently accepted. It is pure: no I/O, and it
depends on nothing but the standard library.

Beyond plain instance-set inclusion, two contract rules of this platform are enforced (docs/contracts.md):

- **removing (or renaming) a declared field is incompatible** even when the new model would ignore it:
  events written under the old schema carry it, and the consumers on the new schema would lose it;
- **a changed default** of an optional field is incompatible: old events without the field would be read
  with another value.

Adding an *optional* field is compatible when the old schema leaves unknown fields unconstrained (no
``additionalProperties`` keyword: a tolerant reader, writers never sent the name). When the old schema
declares free-form extra fields (``additionalProperties: true`` or a schema, e.g. ``WideLogEvent``'s context
fields), those are part of the contract, so a new declared field must accept whatever the old schema allowed
there.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RULES", "Incompatibility", "check_backward", "strip_annotations"]

#: Every rule id :func:`check_backward` reports, with what it means.
RULES: Final[Mapping[str, str]] = {
    "field-removed": "a declared field is gone (removed or renamed)",
    "field-required": "a field old events may omit is now required (a new required field)",
    "type-changed": "a value type the old schema allowed is no longer accepted",
    "nullable-removed": "null was allowed and is no longer accepted",
    "enum-narrowed": "a value of an enum/Literal/const is no longer accepted",
    "default-changed": "the default of an optional field changed: old events without it read differently",
    "max-length-narrowed": "strings may be shorter than before (maxLength lowered or added)",
    "min-length-raised": "strings must be longer than before (minLength raised or added)",
    "pattern-changed": "a string pattern was added or changed",
    "format-changed": "a string format was added or changed",
    "maximum-lowered": "numbers may be smaller than before (maximum lowered or added)",
    "minimum-raised": "numbers must be larger than before (minimum raised or added)",
    "multiple-of-changed": "multipleOf no longer divides the old one",
    "max-items-narrowed": "arrays may be shorter than before",
    "min-items-raised": "arrays must be longer than before",
    "unique-items-added": "arrays must now hold unique items",
    "max-properties-narrowed": "objects may have fewer properties than before",
    "min-properties-raised": "objects must have more properties than before",
    "additional-properties-closed": "unknown fields were allowed and are now refused",
    "schema-narrowed": "the new schema constrains a value the old one left free",
    "unsupported-keyword": "a keyword the checker cannot prove compatible was added or changed",
}

#: Keywords that never change which instances are valid.
_ANNOTATIONS: Final = frozenset(
    {
        "title",
        "description",
        "$comment",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "$anchor",
        "discriminator",  # OpenAPI's, emitted by pydantic next to oneOf: annotation only
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)
#: Keywords this module understands (besides annotations, ``default`` and ``x-`` extensions).
_HANDLED: Final = frozenset(
    {
        "$ref",
        "$defs",
        "definitions",
        "default",
        "type",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    }
)
#: Maps whose *keys* are names, not keywords (for :func:`strip_annotations`).
_NAME_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_ALL_TYPES: Final = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason why consumers on the new schema could not read an event written under the old one.

    ``path`` is the wire path of the field (``payload.mentions[]``, ``context.*`` for extra fields; empty
    for the event itself), ``rule`` a key of :data:`RULES`.
    """

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(event)'}: {self.rule}: {self.message}"


# ------------------------------------------------------------------------------------------------- helpers
def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _key(value: Any) -> str:
    """JSON identity of a value (``true`` and ``1`` differ, ``1`` and ``1.0`` are equal)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _value_types(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"integer", "number"} if value.is_integer() else {"number"}
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, list):
        return {"array"}
    if isinstance(value, dict):
        return {"object"}
    return set()


def strip_annotations(schema: Any) -> Any:
    """``schema`` without annotation keywords (titles, descriptions, comments, examples), recursively.

    Two schemas equal after this accept exactly the same instances (and have the same defaults).
    """
    if isinstance(schema, list):
        return [strip_annotations(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS and key not in {"$schema"}:
            continue
        if key in {"enum", "const", "default", "required", "type"}:
            out[key] = value
        elif key in _NAME_MAPS and isinstance(value, dict):
            out[key] = {name: strip_annotations(sub) for name, sub in value.items()}
        else:
            out[key] = strip_annotations(value)
    return out


class _Doc:
    """One schema document: resolves its local ``$ref`` pointers."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def resolve(self, schema: Any) -> Any:
        """Follow ``$ref`` (merging sibling keywords, as 2020-12 applies both) until none is left."""
        seen: set[str] = set()
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in seen:
                raise ValueError(f"$ref cycle without content: {ref}")
            seen.add(ref)
            target = self._pointer(ref)
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            if not siblings:
                schema = target
            elif isinstance(target, dict):
                schema = {**target, **siblings}
            else:  # a boolean target: false stays false, true adds nothing
                schema = siblings if target is True else False
        return schema

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ValueError(f"unresolvable $ref {ref!r}")
        return node


# -------------------------------------------------------------------------------------- instance checking
def _fits(value: Any, schema: Any, doc: _Doc, depth: int = 0) -> bool:
    """Whether ``value`` is valid under ``schema`` (the subset of JSON Schema this module handles).

    Used for finite old value sets (``enum``/``const``), so an old value is tested exactly. Unknown keywords
    make the answer False (conservative).
    """
    schema = doc.resolve(schema)
    if schema is True or schema == {}:
        return True
    if schema is False or not isinstance(schema, dict) or depth > 64:
        return False
    if any(_unknown(k) for k in schema):
        return False
    if "anyOf" in schema and not any(_fits(value, s, doc, depth + 1) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(_fits(value, s, doc, depth + 1) for s in schema["oneOf"]) != 1:
        return False
    if "allOf" in schema and not all(_fits(value, s, doc, depth + 1) for s in schema["allOf"]):
        return False
    types = _declared_types(schema)
    if types is not None and not (_value_types(value) & types):
        return False
    if "const" in schema and _key(schema["const"]) != _key(value):
        return False
    if "enum" in schema and _key(value) not in {_key(v) for v in schema["enum"]}:
        return False
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if "format" in schema:
            return False  # formats are not evaluated here: unknown means not proven
    elif isinstance(value, int | float) and not isinstance(value, bool):
        low = _lower(schema)
        high = _upper(schema)
        if low is not None and (value < low[0] or (low[1] and value == low[0])):
            return False
        if high is not None and (value > high[0] or (high[1] and value == high[0])):
            return False
        if "multipleOf" in schema and (value / schema["multipleOf"]) % 1 != 0:
            return False
    elif isinstance(value, list):
        items = schema.get("items", True)
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else items
            if not _fits(item, sub, doc, depth + 1):
                return False
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            return False
        if schema.get("uniqueItems") and len({_key(v) for v in value}) != len(value):
            return False
    elif isinstance(value, dict):
        if any(name not in value for name in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        for name, item in value.items():
            if "patternProperties" in schema or "propertyNames" in schema:
                return False
            sub = props.get(name, schema.get("additionalProperties", True))
            if not _fits(item, sub, doc, depth + 1):
                return False
        if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", math.inf):
            return False
    return True


def _unknown(keyword: str) -> bool:
    return not (keyword in _HANDLED or keyword in _ANNOTATIONS or keyword.startswith("x-"))


def _declared_types(schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a schema allows by its ``type``/``const``/``enum`` (None: any type)."""
    types: set[str] | None = None
    if "type" in schema:
        raw = schema["type"]
        types = set(raw if isinstance(raw, list) else [raw])
        if "number" in types:
            types.add("integer")
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if values is not None:
        from_values: set[str] = set()
        for value in values:
            from_values |= _value_types(value)
        types = from_values if types is None else types & from_values
    return types


def _lower(schema: Mapping[str, Any]) -> tuple[float, bool] | None:
    """The lower bound as (value, exclusive), the tighter of ``minimum`` and ``exclusiveMinimum``."""
    bounds: list[tuple[float, bool]] = []
    if isinstance(schema.get("minimum"), int | float):
        bounds.append((schema["minimum"], False))
    if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
        schema.get("exclusiveMinimum"), bool
    ):
        bounds.append((schema["exclusiveMinimum"], True))
    return max(bounds, key=lambda b: (b[0], b[1])) if bounds else None


def _upper(schema: Mapping[str, Any]) -> tuple[float, bool] | None:
    bounds: list[tuple[float, bool]] = []
    if isinstance(schema.get("maximum"), int | float):
        bounds.append((schema["maximum"], False))
    if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
        schema.get("exclusiveMaximum"), bool
    ):
        bounds.append((schema["exclusiveMaximum"], True))
    return min(bounds, key=lambda b: (b[0], not b[1])) if bounds else None


def _as_integer_bound(bound: tuple[float, bool] | None, *, lower: bool) -> tuple[float, bool] | None:
    """For integers ``> 0`` is ``>= 1``: an inclusive bound, so that equivalent forms compare equal."""
    if bound is None:
        return None
    value, exclusive = bound
    if lower:
        inclusive = math.floor(value) + 1 if exclusive else math.ceil(value)
    else:
        inclusive = math.ceil(value) - 1 if exclusive else math.floor(value)
    return float(inclusive), False


def _describe_types(types: set[str] | None) -> str:
    if types is None:
        return "any value"
    shown = sorted(_plain(types))
    return " or ".join(shown)


# ------------------------------------------------------------------------------------------------- checker
class _Checker:
    def __init__(self, old_root: Any, new_root: Any) -> None:
        self.old = _Doc(old_root)
        self.new = _Doc(new_root)
        self._active: set[tuple[object, object]] = set()

    # Each check returns its problems; callers decide whether to keep them (union branches try several).
    def check(self, old: Any, new: Any, path: str) -> list[Incompatibility]:
        marker = (_identity(old), _identity(new))
        old = self.old.resolve(old)
        new = self.new.resolve(new)
        if new is True or new == {} or old is False:
            return []
        if marker in self._active:  # a recursive schema: assume the cycle holds (it is checked once)
            return []
        self._active.add(marker)
        try:
            problems = (
                self._default(old, new, path) if isinstance(old, dict) and isinstance(new, dict) else []
            )
            return problems + self._check(old, new, path)
        finally:
            self._active.discard(marker)

    def _check(self, old: Any, new: Any, path: str) -> list[Incompatibility]:
        if new is False:
            return [Incompatibility(path, "schema-narrowed", "the new schema refuses every value")]
        if old is True:
            old = {}
        if not isinstance(old, dict) or not isinstance(new, dict):
            return [
                Incompatibility(path, "unsupported-keyword", "a schema is neither an object nor a boolean")
            ]

        # Old unions: every old branch must be readable by the new schema.
        for key in ("anyOf", "oneOf"):
            if key in old:
                rest = {k: v for k, v in old.items() if k != key}
                problems: list[Incompatibility] = []
                for branch in old[key]:
                    merged = self._merge_old(rest, branch)
                    found = self.check(merged, new, path)
                    if found and self._is_null(merged):
                        found = [Incompatibility(path, "nullable-removed", "null was accepted, now refused")]
                    problems += found
                return _dedupe(problems)
        if "allOf" in old:
            rest = {k: v for k, v in old.items() if k != "allOf"}
            combined: Any = rest
            for part in old["allOf"]:
                combined = self._merge_old(combined, part) if isinstance(combined, dict) else combined
            return self.check(combined, new, path)
        old_types = _declared_types(old)
        finite = "enum" in old or "const" in old
        if not finite and old_types is not None and len(_plain(old_types)) > 1:
            # ``type: [a, b]`` is a union too: check per type
            problems = []
            for t in sorted(_plain(old_types)):
                branch = {**old, "type": t}
                found = self.check(branch, new, path)
                if found and t == "null":
                    found = [Incompatibility(path, "nullable-removed", "null was accepted, now refused")]
                problems += found
            return _dedupe(problems)

        # New combinators.
        if "allOf" in new:
            rest = {k: v for k, v in new.items() if k != "allOf"}
            problems = self.check(old, rest, path) if rest else []
            for part in new["allOf"]:
                problems += self.check(old, part, path)
            return _dedupe(problems)
        for key in ("anyOf", "oneOf"):
            if key in new:
                rest = {k: v for k, v in new.items() if k != key}
                base = self.check(old, rest, path) if _constraining(rest) else []
                if not _constraining(old):  # any value was allowed: say which types are left
                    union: set[str] = set()
                    for branch in new[key]:
                        resolved = self.new.resolve(branch)
                        kinds = _declared_types(resolved) if isinstance(resolved, dict) else None
                        if kinds is None:
                            break
                        union |= kinds
                    else:
                        only = _describe_types(union)
                        return [
                            *base,
                            Incompatibility(path, "type-changed", f"was any value, now only {only}"),
                        ]
                best: list[Incompatibility] | None = None
                for branch in new[key]:
                    found = self.check(old, branch, path)
                    if not found:
                        return base
                    if best is None or _rank(found) < _rank(best):
                        best = found
                return _dedupe(base + (best or [Incompatibility(path, "schema-narrowed", f"empty {key}")]))

        problems = [
            Incompatibility(path, "unsupported-keyword", f"`{k}` in the new schema cannot be checked")
            for k in sorted(new)
            if _unknown(k) and _show(new[k]) != _show(old.get(k))
        ]

        # Finite old value sets: test every old value exactly against the new schema.
        old_values = [old["const"]] if "const" in old else old.get("enum")
        if old_values is not None:
            refused = [v for v in old_values if not _fits(v, new, self.new)]
            if refused:
                new_values = [new["const"]] if "const" in new else new.get("enum")
                allowed = f" (now allowed: {', '.join(_show(v) for v in new_values)})" if new_values else ""
                shown = ", ".join(_show(v) for v in refused)
                problems.append(
                    Incompatibility(
                        path,
                        "enum-narrowed",
                        f"value {shown} written under the old schema is no longer accepted{allowed}",
                    )
                )
            return problems

        new_types = _declared_types(new)
        if new_types is not None:
            if old_types is None:
                problems.append(
                    Incompatibility(
                        path, "type-changed", f"was any value, now only {_describe_types(new_types)}"
                    )
                )
                return problems
            lost = {t for t in old_types if t not in new_types}
            if lost:
                rule = "nullable-removed" if lost == {"null"} else "type-changed"
                problems.append(
                    Incompatibility(
                        path,
                        rule,
                        f"was {_describe_types(old_types)}, now {_describe_types(new_types)}",
                    )
                )
                return problems
        if ("const" in new or "enum" in new) and old_values is None:
            new_values = [new["const"]] if "const" in new else new["enum"]
            problems.append(
                Incompatibility(
                    path,
                    "enum-narrowed",
                    f"any {_describe_types(old_types)} was accepted, now only "
                    f"{', '.join(_show(v) for v in new_values)}",
                )
            )
            return problems

        types = old_types if old_types is not None else set(_ALL_TYPES)
        if "string" in types:
            problems += self._strings(old, new, path)
        if types & {"number", "integer"}:
            problems += self._numbers(old, new, path, integer_only="number" not in types)
        if "array" in types:
            problems += self._arrays(old, new, path)
        if "object" in types:
            problems += self._objects(old, new, path)
        return problems

    # -------------------------------------------------------------------------------------------- pieces
    def _merge_old(self, rest: Mapping[str, Any], branch: Any) -> Any:
        branch = self.old.resolve(branch)
        rest = {k: v for k, v in rest.items() if k != "default"}  # compared once, on the whole schema
        if not rest:
            return branch
        if branch is False:
            return False
        if branch is True:
            return dict(rest)
        return {**rest, **branch}

    def _is_null(self, schema: Any) -> bool:
        schema = self.old.resolve(schema)
        return isinstance(schema, dict) and _declared_types(schema) == {"null"}

    def _default(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        if "default" in old and "default" in new and _key(old["default"]) != _key(new["default"]):
            return [
                Incompatibility(
                    path,
                    "default-changed",
                    f"default was {_show(old['default'])}, now {_show(new['default'])}: events written "
                    "without the field would be read differently",
                )
            ]
        return []

    def _strings(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        out: list[Incompatibility] = []
        if "maxLength" in new and new["maxLength"] < old.get("maxLength", math.inf):
            was = old.get("maxLength", "unlimited")
            out.append(
                Incompatibility(path, "max-length-narrowed", f"maxLength was {was}, now {new['maxLength']}")
            )
        if new.get("minLength", 0) > old.get("minLength", 0):
            out.append(
                Incompatibility(
                    path,
                    "min-length-raised",
                    f"minLength was {old.get('minLength', 0)}, now {new['minLength']}",
                )
            )
        if "pattern" in new and new["pattern"] != old.get("pattern"):
            was = _show(old["pattern"]) if "pattern" in old else "none"
            out.append(
                Incompatibility(path, "pattern-changed", f"pattern was {was}, now {_show(new['pattern'])}")
            )
        if "format" in new and new["format"] != old.get("format"):
            was = _show(old["format"]) if "format" in old else "none"
            out.append(
                Incompatibility(path, "format-changed", f"format was {was}, now {_show(new['format'])}")
            )
        return out

    def _numbers(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str, *, integer_only: bool
    ) -> list[Incompatibility]:
        out: list[Incompatibility] = []
        old_low, new_low = _lower(old), _lower(new)
        old_high, new_high = _upper(old), _upper(new)
        if integer_only:
            old_low, new_low = _as_integer_bound(old_low, lower=True), _as_integer_bound(new_low, lower=True)
            old_high, new_high = (
                _as_integer_bound(old_high, lower=False),
                _as_integer_bound(new_high, lower=False),
            )
        if new_low is not None and (
            old_low is None
            or new_low[0] > old_low[0]
            or (new_low[0] == old_low[0] and new_low[1] > old_low[1])
        ):
            out.append(
                Incompatibility(
                    path, "minimum-raised", f"lower bound was {_bound(old_low)}, now {_bound(new_low)}"
                )
            )
        if new_high is not None and (
            old_high is None
            or new_high[0] < old_high[0]
            or (new_high[0] == old_high[0] and new_high[1] > old_high[1])
        ):
            out.append(
                Incompatibility(
                    path, "maximum-lowered", f"upper bound was {_bound(old_high)}, now {_bound(new_high)}"
                )
            )
        if "multipleOf" in new:
            old_multiple = old.get("multipleOf")
            if old_multiple is None or (old_multiple / new["multipleOf"]) % 1 != 0:
                out.append(
                    Incompatibility(
                        path,
                        "multiple-of-changed",
                        f"multipleOf was {old_multiple if old_multiple is not None else 'none'}, "
                        f"now {new['multipleOf']}",
                    )
                )
        return out

    def _arrays(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        out: list[Incompatibility] = []
        item_path = f"{path}[]"
        old_prefix = old.get("prefixItems", [])
        new_prefix = new.get("prefixItems", [])
        old_items = old.get("items", True)
        new_items = new.get("items", True)
        for index in range(max(len(old_prefix), len(new_prefix))):
            old_sub = old_prefix[index] if index < len(old_prefix) else old_items
            new_sub = new_prefix[index] if index < len(new_prefix) else new_items
            out += self.check(old_sub, new_sub, f"{path}[{index}]")
        out += self.check(old_items, new_items, item_path)
        if "maxItems" in new and new["maxItems"] < old.get("maxItems", math.inf):
            out.append(
                Incompatibility(
                    path,
                    "max-items-narrowed",
                    f"maxItems was {old.get('maxItems', 'unlimited')}, now {new['maxItems']}",
                )
            )
        if new.get("minItems", 0) > old.get("minItems", 0):
            out.append(
                Incompatibility(
                    path, "min-items-raised", f"minItems was {old.get('minItems', 0)}, now {new['minItems']}"
                )
            )
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            out.append(Incompatibility(path, "unique-items-added", "items must now be unique"))
        return out

    def _objects(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        out: list[Incompatibility] = []
        old_props: Mapping[str, Any] = old.get("properties", {})
        new_props: Mapping[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", []))
        new_required = set(new.get("required", []))
        old_extra = old.get("additionalProperties")  # None: not said (tolerant reader, see module doc)
        new_extra = new.get("additionalProperties", True)

        # only a schema that describes objects can drop a field (an ``anyOf``'s shared keywords do not)
        describes = "properties" in new or "object" in (_declared_types(new) or set())
        removed = [name for name in old_props if name not in new_props] if describes else []
        added = [name for name in new_props if name not in old_props]
        for name in removed:
            field_path = _join(path, name)
            hint = self._rename_hint(old_props[name], added, new_props)
            out.append(
                Incompatibility(
                    field_path,
                    "field-removed",
                    f"field `{name}` was removed{hint}: events written under the old schema carry it"
                    + (
                        " and are now refused (additionalProperties is false)"
                        if new_extra is False
                        else " and consumers on the new schema would drop it"
                    ),
                )
            )
            if new_extra is not False and not _matches_pattern(name, new):
                out += self.check(old_props[name], new_extra, field_path)
        for name in old_props:
            if name in new_props:
                out += self.check(old_props[name], new_props[name], _join(path, name))
        for name in added:
            if old_extra is not None and old_extra is not False:
                # free-form extra fields were part of the old contract: the new field must accept them
                out += [
                    Incompatibility(
                        p.path,
                        p.rule,
                        f"{p.message} (old events may carry `{name}` as a free-form extra field)",
                    )
                    for p in self.check(old_extra, new_props[name], _join(path, name))
                ]
        for name in sorted(new_required - old_required):
            what = "a new required field" if name not in old_props else "an optional field made required"
            out.append(
                Incompatibility(
                    _join(path, name),
                    "field-required",
                    f"`{name}` is {what}: events written under the old schema may omit it",
                )
            )
        if new_extra is False and old_extra is not False:
            out.append(
                Incompatibility(
                    path,
                    "additional-properties-closed",
                    "unknown fields were allowed and are now refused (additionalProperties: false)",
                )
            )
        elif new_extra is not True and old_extra is not False:
            out += self.check(True if old_extra is None else old_extra, new_extra, _join(path, "*"))
        if "patternProperties" in new and _show(new["patternProperties"]) != _show(
            old.get("patternProperties")
        ):
            out.append(
                Incompatibility(
                    path, "unsupported-keyword", "`patternProperties` changed and cannot be checked"
                )
            )
        if "propertyNames" in new:
            out += self.check(old.get("propertyNames", {"type": "string"}), new["propertyNames"], path + "{}")
        if "maxProperties" in new and new["maxProperties"] < old.get("maxProperties", math.inf):
            out.append(
                Incompatibility(
                    path,
                    "max-properties-narrowed",
                    f"maxProperties was {old.get('maxProperties', 'unlimited')}, now {new['maxProperties']}",
                )
            )
        if new.get("minProperties", 0) > old.get("minProperties", 0):
            out.append(
                Incompatibility(
                    path,
                    "min-properties-raised",
                    f"minProperties was {old.get('minProperties', 0)}, now {new['minProperties']}",
                )
            )
        return out

    def _rename_hint(self, old_field: Any, added: list[str], new_props: Mapping[str, Any]) -> str:
        same = [name for name in added if not self.check(old_field, new_props[name], "")]
        return f" (renamed to `{same[0]}`?)" if len(same) == 1 else ""


def _identity(schema: Any) -> object:
    """What makes a schema node the same node again when a recursive schema revisits it."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        return schema["$ref"]
    return id(schema)


def _plain(types: set[str]) -> set[str]:
    """``types`` without ``integer`` when ``number`` (which includes it) is there."""
    return types - {"integer"} if "number" in types else types


def _matches_pattern(name: str, schema: Mapping[str, Any]) -> bool:
    return any(re.search(pattern, name) for pattern in schema.get("patternProperties", {}))


def _constraining(schema: Mapping[str, Any]) -> bool:
    skip = {"default", "$defs", "definitions"}
    return any(k not in _ANNOTATIONS and k not in skip and not k.startswith("x-") for k in schema)


def _rank(problems: list[Incompatibility]) -> tuple[int, int]:
    """Which failing union branch to report: the one that fails deepest (closest match), then fewest."""
    type_level = sum(p.rule in {"type-changed", "nullable-removed"} for p in problems)
    return type_level, len(problems)


def _bound(bound: tuple[float, bool] | None) -> str:
    if bound is None:
        return "none"
    value, exclusive = bound
    shown = int(value) if float(value).is_integer() else value
    return f"{shown} (exclusive)" if exclusive else f"{shown}"


def _dedupe(problems: list[Incompatibility]) -> list[Incompatibility]:
    return list(dict.fromkeys(problems))


def check_backward(old: Mapping[str, Any] | bool, new: Mapping[str, Any] | bool) -> list[Incompatibility]:
    """The reasons why consumers on ``new`` could not read every event valid under ``old`` (empty: none).

    Both are whole JSON Schema documents; their local ``$ref`` pointers (``#/$defs/...``) resolve within
    each. ValueError for a ``$ref`` that does not resolve or is not local.
    """
    return _dedupe(_Checker(old, new).check(old, new, ""))
