"""check_backward: the pure BACKWARD-compatibility check over two JSON Schema documents."""

from __future__ import annotations

from typing import Any

import pytest
from platform_events.compat import RULES, Incompatibility, check_backward, strip_annotations


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or [], **extra}


def rules(old: Any, new: Any) -> list[tuple[str, str]]:
    return [(p.path, p.rule) for p in check_backward(old, new)]


STR = {"type": "string"}
INT = {"type": "integer"}
NULLABLE_STR = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


# ----------------------------------------------------------------------------------------- compatible
@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(obj({"a": STR}, ["a"]), obj({"a": STR}, ["a"]), id="identical"),
        pytest.param(obj({"a": STR}, ["a"]), obj({"a": STR, "b": NULLABLE_STR}, ["a"]), id="optional-added"),
        pytest.param(obj({"a": STR}, ["a"]), obj({"a": STR}), id="required-relaxed"),
        pytest.param(obj({"a": STR}), obj({"a": NULLABLE_STR}), id="made-nullable"),
        pytest.param(obj({"a": INT}), obj({"a": {"type": "number"}}), id="integer-widened-to-number"),
        pytest.param(obj({"a": INT}), obj({"a": {"anyOf": [INT, STR]}}), id="union-widened"),
        pytest.param(
            obj({"a": {"enum": ["x", "y"]}}), obj({"a": {"enum": ["x", "y", "z"]}}), id="enum-widened"
        ),
        pytest.param(obj({"a": {"const": "x"}}), obj({"a": {"enum": ["x", "y"]}}), id="const-to-enum"),
        pytest.param(obj({"a": {"const": "x"}}), obj({"a": STR}), id="const-to-string"),
        pytest.param(
            obj({"a": {"type": "string", "maxLength": 10}}),
            obj({"a": {"type": "string", "maxLength": 20}}),
            id="max-length-widened",
        ),
        pytest.param(
            obj({"a": {"type": "string", "maxLength": 10}}), obj({"a": STR}), id="max-length-dropped"
        ),
        pytest.param(
            obj({"a": {"type": "integer", "exclusiveMinimum": 0}}),
            obj({"a": {"type": "integer", "minimum": 1}}),
            id="integer-bounds-equivalent",
        ),
        pytest.param(
            obj({"a": {"type": "integer", "minimum": 5, "maximum": 9}}),
            obj({"a": {"type": "integer", "minimum": 0, "maximum": 10}}),
            id="bounds-widened",
        ),
        pytest.param(
            obj({"a": {"type": "array", "items": INT, "maxItems": 3}}),
            obj({"a": {"type": "array", "items": {"type": "number"}}}),
            id="array-widened",
        ),
        pytest.param(obj({"a": STR}, additionalProperties=False), obj({"a": STR}), id="opened"),
        pytest.param(
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": STR}},
            obj({"a": STR}),
            id="ref-vs-inline",
        ),
        pytest.param(
            obj({"a": {"type": "string", "description": "old", "title": "A"}}),
            obj({"a": {"type": "string", "description": "new"}}),
            id="annotations-ignored",
        ),
        pytest.param(
            obj({"a": {"enum": ["x", "y"]}}),
            obj({"a": {"type": "string", "maxLength": 1}}),
            id="enum-values-fit-new-constraints",
        ),
        pytest.param(
            obj({"a": {"type": "string"}}),
            obj({"a": {"type": "string"}, "x-note": "extension"}),
            id="extension-keywords",
        ),
        pytest.param(
            obj({"a": {"type": ["string", "null"]}}), obj({"a": NULLABLE_STR}), id="type-list-vs-anyof"
        ),
        pytest.param(
            obj({"a": {"type": "string", "pattern": "\\S"}}),
            obj({"a": {"type": "string"}}),
            id="pattern-dropped",
        ),
        pytest.param(
            obj({"a": {"type": "integer", "multipleOf": 10}}),
            obj({"a": {"type": "integer", "multipleOf": 5}}),
            id="multiple-of-divides",
        ),
    ],
)
def test_compatible(old: Any, new: Any) -> None:
    assert check_backward(old, new) == []


# --------------------------------------------------------------------------------------- incompatible
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(obj({"a": STR, "b": STR}), obj({"a": STR}), [("b", "field-removed")], id="removed"),
        pytest.param(
            obj({"a": STR}, ["a"]),
            obj({"a": STR, "b": STR}, ["a", "b"]),
            [("b", "field-required")],
            id="new-req",
        ),
        pytest.param(obj({"a": STR}), obj({"a": STR}, ["a"]), [("a", "field-required")], id="made-required"),
        pytest.param(obj({"a": STR}), obj({"a": INT}), [("a", "type-changed")], id="type-changed"),
        pytest.param(
            obj({"a": {"type": "number"}}), obj({"a": INT}), [("a", "type-changed")], id="number-to-integer"
        ),
        pytest.param(
            obj({"a": NULLABLE_STR}), obj({"a": STR}), [("a", "nullable-removed")], id="not-nullable"
        ),
        pytest.param(
            obj({"a": {"enum": ["x", "y"]}}), obj({"a": {"enum": ["x"]}}), [("a", "enum-narrowed")], id="enum"
        ),
        pytest.param(
            obj({"a": {"const": "x", "type": "string"}}),
            obj({"a": {"const": "z", "type": "string"}}),
            [("a", "enum-narrowed")],
            id="const-changed",
        ),
        pytest.param(obj({"a": STR}), obj({"a": {"enum": ["x"]}}), [("a", "enum-narrowed")], id="enum-added"),
        pytest.param(
            obj({"a": {"enum": [True]}}),
            obj({"a": {"enum": [1]}}),
            [("a", "enum-narrowed")],
            id="true-is-not-1",
        ),
        pytest.param(
            obj({"a": {"type": "string", "maxLength": 20}}),
            obj({"a": {"type": "string", "maxLength": 10}}),
            [("a", "max-length-narrowed")],
            id="max-length",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": {"type": "string", "maxLength": 10}}),
            [("a", "max-length-narrowed")],
            id="ml+",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": {"type": "string", "minLength": 1}}),
            [("a", "min-length-raised")],
            id="min",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": {"type": "string", "pattern": "^x"}}),
            [("a", "pattern-changed")],
            id="pat",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": {"type": "string", "format": "date-time"}}),
            [("a", "format-changed")],
            id="fmt",
        ),
        pytest.param(
            obj({"a": {"type": "integer", "minimum": 0}}),
            obj({"a": {"type": "integer", "exclusiveMinimum": 0}}),
            [("a", "minimum-raised")],
            id="minimum",
        ),
        pytest.param(
            obj({"a": {"type": "number", "maximum": 10}}),
            obj({"a": {"type": "number", "exclusiveMaximum": 10}}),
            [("a", "maximum-lowered")],
            id="maximum-exclusive",
        ),
        pytest.param(
            obj({"a": INT}),
            obj({"a": {"type": "integer", "maximum": 10}}),
            [("a", "maximum-lowered")],
            id="max+",
        ),
        pytest.param(
            obj({"a": {"type": "integer", "multipleOf": 5}}),
            obj({"a": {"type": "integer", "multipleOf": 10}}),
            [("a", "multiple-of-changed")],
            id="multiple-of",
        ),
        pytest.param(
            obj({"a": {"type": "array", "items": STR}}),
            obj({"a": {"type": "array", "items": INT}}),
            [("a[]", "type-changed")],
            id="items",
        ),
        pytest.param(
            obj({"a": {"type": "array", "items": STR}}),
            obj({"a": {"type": "array", "items": STR, "maxItems": 2}}),
            [("a", "max-items-narrowed")],
            id="max-items",
        ),
        pytest.param(
            obj({"a": {"type": "array"}}),
            obj({"a": {"type": "array", "uniqueItems": True}}),
            [("a", "unique-items-added")],
            id="unique",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": STR}, additionalProperties=False),
            [("", "additional-properties-closed")],
            id="closed",
        ),
        pytest.param(
            obj({"a": STR}, additionalProperties=True),
            obj({"a": STR, "n": INT}, additionalProperties=True),
            [("n", "type-changed")],
            id="free-form-field-declared",
        ),
        pytest.param(
            obj({"a": STR}, additionalProperties=True),
            obj({"a": STR}, additionalProperties=STR),
            [("*", "type-changed")],
            id="extra-narrowed",
        ),
        pytest.param(
            obj({"a": {"type": "boolean", "default": False}}),
            obj({"a": {"type": "boolean", "default": True}}),
            [("a", "default-changed")],
            id="default",
        ),
        pytest.param(
            obj({"a": NULLABLE_STR}),
            obj({"a": {**NULLABLE_STR, "default": "x"}}),
            [("a", "default-changed")],
            id="default-of-nullable",
        ),
        pytest.param(
            obj({"a": STR}),
            obj({"a": {"type": "string", "not": {"const": ""}}}),
            [("a", "unsupported-keyword")],
            id="not",
        ),
        pytest.param({}, {"type": "object"}, [("", "type-changed")], id="any-to-object"),
        pytest.param(obj({"a": STR}), False, [("", "schema-narrowed")], id="false"),
    ],
)
def test_incompatible(old: Any, new: Any, expected: list[tuple[str, str]]) -> None:
    assert rules(old, new) == expected


def test_every_reported_rule_is_documented() -> None:
    cases = [
        (obj({"a": STR, "b": STR}), obj({"a": INT}, ["a", "c"], additionalProperties=False)),
        (obj({"a": {"enum": ["x", "y"]}}), obj({"a": {"enum": ["x"]}})),
    ]
    for old, new in cases:
        for problem in check_backward(old, new):
            assert problem.rule in RULES


def test_nested_refs_and_paths() -> None:
    def doc(payload_props: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"payload": {"$ref": "#/$defs/Payload", "description": "the payload"}},
            "required": ["payload"],
            "$defs": {
                "Payload": {"type": "object", "properties": payload_props, "required": required},
                "Id": {"type": "string", "maxLength": 128},
            },
        }

    old = doc(
        {"id": {"$ref": "#/$defs/Id"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/Id"}}}, ["id"]
    )
    new = doc(
        {"id": {"type": "string", "maxLength": 64}, "tags": {"type": "array", "items": INT}, "n": INT},
        ["id", "n"],
    )
    assert rules(old, new) == [
        ("payload.id", "max-length-narrowed"),
        ("payload.tags[]", "type-changed"),
        ("payload.n", "field-required"),
    ]


def test_rename_is_reported_as_removed_with_a_hint() -> None:
    [problem] = [
        p for p in check_backward(obj({"author": STR}), obj({"writer": STR})) if p.rule == "field-removed"
    ]
    assert problem.path == "author"
    assert "renamed to `writer`?" in problem.message
    assert str(problem).startswith("author: field-removed: field `author` was removed")


def test_messages_say_what_changed() -> None:
    [enum] = check_backward(
        obj({"a": {"enum": ["장애접수", "정기점검"]}}), obj({"a": {"enum": ["장애접수"]}})
    )
    assert enum == Incompatibility(
        "a",
        "enum-narrowed",
        'value "정기점검" written under the old schema is no longer accepted (now allowed: "장애접수")',
    )
    [length] = check_backward(
        obj({"a": {"type": "string", "maxLength": 40000}}), obj({"a": {"type": "string", "maxLength": 100}})
    )
    assert length.message == "maxLength was 40000, now 100"
    [typ] = check_backward(obj({"a": INT}), obj({"a": STR}))
    assert typ.message == "was integer, now string"


def test_union_on_both_sides() -> None:
    old = obj({"a": {"anyOf": [STR, INT, {"type": "null"}]}})
    assert rules(old, obj({"a": {"anyOf": [INT, {"type": "null"}, STR]}})) == []
    assert rules(old, obj({"a": {"anyOf": [STR, {"type": "null"}]}})) == [("a", "type-changed")]
    assert rules(old, obj({"a": {"anyOf": [STR, INT]}})) == [("a", "nullable-removed")]


def test_discriminated_union_branches() -> None:
    def doc(*types: str) -> dict[str, Any]:
        return {
            "oneOf": [{"$ref": f"#/$defs/{t}"} for t in types],
            "discriminator": {"propertyName": "kind"},
            "$defs": {t: obj({"kind": {"const": t}}, ["kind"]) for t in ("A", "B", "C")},
        }

    assert rules(doc("A", "B"), doc("A", "B", "C")) == []
    assert ("kind", "enum-narrowed") in rules(doc("A", "B"), doc("A"))


def test_recursive_schema_terminates() -> None:
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": obj(
                {"name": STR, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}, ["name"]
            )
        },
    }
    assert check_backward(tree, tree) == []
    narrowed = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": obj(
                {
                    "name": {"type": "string", "maxLength": 3},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                ["name"],
            )
        },
    }
    assert ("name", "max-length-narrowed") in rules(tree, narrowed)


def test_allof_in_new_must_all_hold() -> None:
    new = {"allOf": [obj({"a": STR}), obj({"a": {"type": "string", "maxLength": 2}})]}
    assert rules(obj({"a": STR}), new) == [("a", "max-length-narrowed")]


def test_unresolvable_ref_is_an_error() -> None:
    with pytest.raises(ValueError, match="unresolvable"):
        check_backward({"$ref": "#/$defs/Missing"}, {})
    with pytest.raises(ValueError, match="local"):
        check_backward({"$ref": "other.json"}, {})


def test_strip_annotations_keeps_property_named_title() -> None:
    schema = obj(
        {"title": {"type": "string", "title": "Title", "description": "d"}}, ["title"], title="Event"
    )
    assert strip_annotations(schema) == obj({"title": {"type": "string"}}, ["title"])
