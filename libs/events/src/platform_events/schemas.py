"""Published JSON Schemas of every topic and the compatibility gate over them.

Each topic's event schema is published as ``libs/events/schemas/<topic>/v<N>.json`` (JSON Schema 2020-12,
generated from the pydantic model, validation mode, wire names). The files are the contract that events on the
topic were written under; they are never edited by hand.

- ``python -m platform_events.schemas write`` (``make schemas``) publishes the current models: v1 for a topic
  without a file; a new version when a model changed in a backward-compatible way; the latest file rewritten
  in place when only descriptions changed. A backward-**incompatible** change is refused unless
  ``--breaking`` is given (``make schemas BREAKING=1``).
- ``python -m platform_events.schemas check`` (part of ``make lint``, and a test) fails when a model is not
  backward compatible with its topic's latest published version
  (:func:`platform_events.compat.check_backward`),
  when a model changed without a published version, or when a version after v1 has no entry in the
  ``## Changelog`` section of ``docs/contracts.md`` (an entry that is not backward compatible with the version
  before it must say "breaking").

Versions are checked against the latest one (BACKWARD, not BACKWARD_TRANSITIVE), like Schema Registry's
default. A breaking version starts a new compatibility line: :func:`compatible_versions` gives the versions
that the current model must still read (the property test decodes events generated from each of them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from platform_events.compat import Incompatibility, check_backward, strip_annotations
from platform_events.topics import TOPICS, TopicSpec

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "PublishedVersion",
    "changelog_entries",
    "check_published",
    "compatible_versions",
    "current_schema",
    "default_changelog",
    "load_version",
    "published_versions",
    "schema_path",
    "schemas_dir",
    "version_links",
    "write_schemas",
]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_VERSION_FILE: Final = re.compile(r"v([1-9][0-9]*)\.json")
_HERE: Final = Path(__file__).resolve().parent


def schemas_dir() -> Path:
    """Where the published schemas are: ``libs/events/schemas`` in a checkout (or the copy in a wheel)."""
    packaged = _HERE / "schema_versions"
    return packaged if packaged.is_dir() else _HERE.parents[1] / "schemas"


def default_changelog() -> Path:
    """``docs/contracts.md`` of the checkout this package lives in."""
    return _HERE.parents[3] / "docs" / "contracts.md"


def schema_path(topic: str, version: int, root: Path | None = None) -> Path:
    return (root or schemas_dir()) / topic / f"v{version}.json"


def repo_relative(path: Path) -> str:
    """``path`` relative to the checkout (``libs/events/schemas/<topic>/v1.json``), for messages and links."""
    try:
        return path.resolve().relative_to(_HERE.parents[3]).as_posix()
    except ValueError:
        return path.as_posix()


def current_schema(spec: TopicSpec[Any]) -> dict[str, Any]:
    """The JSON Schema of ``spec``'s model as it is today (what ``write`` would publish)."""
    schema = spec.model.model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def published_versions(topic: str, root: Path | None = None) -> list[int]:
    """The published version numbers of ``topic`` (default name), ascending; [] when none."""
    directory = (root or schemas_dir()) / topic
    if not directory.is_dir():
        return []
    found = (_VERSION_FILE.fullmatch(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def load_version(topic: str, version: int, root: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_path(topic, version, root).read_text(encoding="utf-8"))
    return data


def _dump(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def version_links(topic: str, root: Path | None = None) -> list[dict[str, Any]]:
    """The published versions of ``topic`` as AsyncAPI extension entries (version, file, still readable)."""
    line = set(compatible_versions(topic, root))
    return [
        {
            "version": version,
            "schema": f"libs/events/schemas/{topic}/v{version}.json",
            "readableByCurrentModel": version in line,
        }
        for version in published_versions(topic, root)
    ]


def compatible_versions(topic: str, root: Path | None = None) -> list[int]:
    """The versions the current model must read: from the last breaking version on (all, if none broke)."""
    versions = published_versions(topic, root)
    start = 0
    for index in range(1, len(versions)):
        older = load_version(topic, versions[index - 1], root)
        newer = load_version(topic, versions[index], root)
        if check_backward(older, newer):
            start = index
    return versions[start:]


# ----------------------------------------------------------------------------------------------- changelog
def changelog_entries(text: str) -> list[str]:
    """The entries (bullets with their continuation lines) of the ``## Changelog`` section of ``text``."""
    entries: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip().lower().startswith("changelog")
            continue
        if not inside:
            continue
        if re.match(r"[-*] ", line):
            entries.append(line[2:].strip())
        elif entries and line.startswith((" ", "\t")) and line.strip():
            entries[-1] += " " + line.strip()
    return entries


def _mentions(entries: Sequence[str], topic: str, version: int) -> list[str]:
    needle = f"{topic}/v{version}.json"
    return [entry for entry in entries if needle in entry]


# ------------------------------------------------------------------------------------------------- the gate
@dataclass(frozen=True, slots=True)
class PublishedVersion:
    topic: str
    version: int
    path: Path


def _gate_message(topic: str, latest: int, problem: Incompatibility) -> str:
    return f"{topic}: {problem.path or '(event)'}: {problem.rule}: {problem.message} (against v{latest})"


def check_published(
    topics: Mapping[str, TopicSpec[Any]] | None = None,
    *,
    root: Path | None = None,
    changelog: str | None = None,
) -> list[str]:
    """Every reason the published schemas and the models disagree; an empty list means the gate passes.

    ``topics`` defaults to the registry, ``root`` to :func:`schemas_dir`, ``changelog`` to the text of
    ``docs/contracts.md``. Messages start with the topic and name the field and the rule.
    """
    registry = TOPICS if topics is None else topics
    directory = root or schemas_dir()
    if changelog is None:
        path = default_changelog()
        changelog = path.read_text(encoding="utf-8") if path.is_file() else ""
    entries = changelog_entries(changelog)
    problems: list[str] = []
    for topic, spec in registry.items():
        versions = published_versions(topic, directory)
        if not versions:
            problems.append(f"{topic}: no published schema: run `make schemas` to publish v1")
            continue
        if versions != list(range(1, len(versions) + 1)):
            shown = ", ".join(f"v{v}" for v in versions)
            problems.append(f"{topic}: versions must be v1..vN without gaps, found {shown}")
            continue
        for version in versions[1:]:
            mentioned = _mentions(entries, topic, version)
            name = f"{topic}/v{version}.json"
            if not mentioned:
                problems.append(
                    f"{topic}: v{version} has no changelog entry: add a bullet naming `{name}` "
                    "under `## Changelog` in docs/contracts.md"
                )
                continue
            older = load_version(topic, version - 1, directory)
            newer = load_version(topic, version, directory)
            if check_backward(older, newer) and not any("breaking" in m.lower() for m in mentioned):
                problems.append(
                    f"{topic}: v{version} is not backward compatible with v{version - 1}: its changelog "
                    f"entry (`{name}`) must say BREAKING and how consumers migrate"
                )
        latest = versions[-1]
        published = load_version(topic, latest, directory)
        current = current_schema(spec)
        incompatible = check_backward(published, current)
        if incompatible:
            problems += [_gate_message(topic, latest, p) for p in incompatible]
        elif strip_annotations(published) != strip_annotations(current):
            problems.append(
                f"{topic}: the model changed since v{latest} (backward compatible): run `make schemas` to "
                f"publish v{latest + 1} and add a changelog entry for `{topic}/v{latest + 1}.json`"
            )
        elif published != current:
            problems.append(f"{topic}: v{latest} has stale descriptions: run `make schemas` (no new version)")
    if directory.is_dir():
        for stray in sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name not in registry):
            problems.append(f"{stray}: schemas are published for a topic that is not in the registry")
    return problems


def write_schemas(
    topics: Mapping[str, TopicSpec[Any]] | None = None,
    *,
    root: Path | None = None,
    breaking: bool = False,
) -> tuple[list[str], list[str]]:
    """Publish the current models; returns (what was written, what was refused)."""
    registry = TOPICS if topics is None else topics
    directory = root or schemas_dir()
    done: list[str] = []
    refused: list[str] = []
    for topic, spec in registry.items():
        current = current_schema(spec)
        versions = published_versions(topic, directory)
        if not versions:
            target = schema_path(topic, 1, directory)
            note = "published v1"
        else:
            latest = versions[-1]
            published = load_version(topic, latest, directory)
            if published == current:
                continue
            incompatible = check_backward(published, current)
            if strip_annotations(published) == strip_annotations(current):
                target = schema_path(topic, latest, directory)
                note = f"v{latest}: descriptions updated in place"
            elif incompatible and not breaking:
                refused += [_gate_message(topic, latest, p) for p in incompatible]
                continue
            else:
                target = schema_path(topic, latest + 1, directory)
                kind = "BREAKING" if incompatible else "backward compatible"
                note = (
                    f"published v{latest + 1} ({kind}): add a changelog entry naming "
                    f"`{topic}/v{latest + 1}.json` to docs/contracts.md"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_dump(current), encoding="utf-8")
        done.append(f"{topic}: {note}")
    return done, refused


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform_events.schemas", description="Published event schemas and their gate."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="publish the current models' schemas (make schemas)")
    write.add_argument(
        "--breaking", action="store_true", help="publish a backward-incompatible change as a new version"
    )
    sub.add_parser("check", help="fail when a model is not backward compatible with its latest version")
    args = parser.parse_args(argv)
    if args.command == "write":
        done, refused = write_schemas(breaking=args.breaking)
        for line in done:
            print(line)
        if refused:
            print("not backward compatible; nothing written for these topics:", file=sys.stderr)
            for line in refused:
                print(f"  {line}", file=sys.stderr)
            print(
                "Keep the old fields readable (docs/contracts.md, 'Changing an event'), or publish a "
                "breaking version on purpose: make schemas BREAKING=1, then a BREAKING changelog entry.",
                file=sys.stderr,
            )
            return 1
        if not done:
            print("schemas: up to date")
        return 0
    problems = check_published()
    if problems:
        print("event schema compatibility gate failed:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print("See docs/contracts.md, 'Changing an event'.", file=sys.stderr)
        return 1
    print(f"schemas: {len(TOPICS)} topics backward compatible with their latest published version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
