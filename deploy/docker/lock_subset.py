"""Pick, from the repo's hash-pinned lock, exactly what one service (or one tool) needs at run time.

    python deploy/docker/lock_subset.py --service issue-ingestor --out /tmp/req.txt --members-out /tmp/m.txt
    python deploy/docker/lock_subset.py --package hatchling --out /tmp/build-req.txt

`requirements/lock.txt` is compiled for the whole workspace plus the dev tools (ADR 0001). Each entry keeps
uv's `# via` annotations, i.e. the packages (or workspace members) that require it. The closure of a
service is every lock entry reachable from the service's own workspace members through those annotations,
so the image gets the lock's exact versions and hashes and none of the test, lint or dev-server packages.
`--members-out` receives the workspace member directories to build and install (the service and the
libraries it depends on, dependencies first). Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+")
_VIA_ONE = re.compile(r"^\s+# via (.+)$")
_VIA_MORE = re.compile(r"^\s+#\s{3}(.+)$")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class LockEntry:
    name: str
    lines: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, LockEntry]:
    """Lock entries by normalized name, each with its own lines and the names that require it."""
    entries: dict[str, LockEntry] = {}
    current: LockEntry | None = None
    in_via = False
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match:
            current = LockEntry(normalize(match.group(1)), [line])
            entries[current.name] = current
            in_via = False
            continue
        if current is None or not line.strip():
            continue
        current.lines.append(line)
        one = _VIA_ONE.match(line)
        if one:
            parent = one.group(1).strip()
            if not parent.startswith("-r"):
                current.parents.add(normalize(parent))
            continue
        if line.strip() == "# via":
            in_via = True
            continue
        more = _VIA_MORE.match(line)
        if in_via and more:
            parent = more.group(1).strip()
            if not parent.startswith("-r"):
                current.parents.add(normalize(parent))
    return entries


@dataclass(frozen=True)
class Member:
    name: str
    path: Path
    dependencies: tuple[str, ...]


def workspace_members(root: Path = ROOT) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for pyproject in sorted([*root.glob("libs/*/pyproject.toml"), *root.glob("services/*/pyproject.toml")]):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        deps = []
        for requirement in project.get("dependencies", []):
            req = _REQ_NAME.match(requirement)
            if req:
                deps.append(normalize(req.group(1)))
        name = normalize(project["name"])
        members[name] = Member(name, pyproject.parent, tuple(deps))
    return members


def member_closure(start: str, members: dict[str, Member]) -> list[Member]:
    """The member and every workspace member it depends on, dependencies first."""
    ordered: list[Member] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in members[name].dependencies:
            if dep in members:
                visit(dep)
        ordered.append(members[name])

    if start not in members:
        raise SystemExit(f"unknown workspace member {start!r}; known: {', '.join(sorted(members))}")
    visit(start)
    return ordered


def lock_closure(roots: set[str], entries: dict[str, LockEntry]) -> list[LockEntry]:
    """Every lock entry required, directly or not, by one of ``roots`` (names; members need not be locked)."""
    wanted = set(roots)
    changed = True
    while changed:
        changed = False
        for entry in entries.values():
            if entry.name not in wanted and entry.parents & wanted:
                wanted.add(entry.name)
                changed = True
    return [entry for entry in entries.values() if entry.name in wanted]


def service_requirements(service_dir: str, root: Path = ROOT) -> tuple[list[LockEntry], list[Member]]:
    """(lock entries, member dirs) for ``services/<service_dir>``."""
    pyproject = root / "services" / service_dir / "pyproject.toml"
    if not pyproject.is_file():
        raise SystemExit(f"no such service: {pyproject.relative_to(root)}")
    name = normalize(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    members = member_closure(name, workspace_members(root))
    entries = parse_lock((root / "requirements" / "lock.txt").read_text(encoding="utf-8"))
    return lock_closure({m.name for m in members}, entries), members


def render(entries: list[LockEntry], origin: str) -> str:
    header = f"# generated by deploy/docker/lock_subset.py from requirements/lock.txt for {origin}\n"
    return header + "".join("\n".join(e.lines) + "\n" for e in entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--service", help="directory name under services/")
    what.add_argument("--package", action="append", help="a locked package (repeatable), e.g. hatchling")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, required=True, help="hash-pinned requirements file to write")
    parser.add_argument("--members-out", type=Path, help="member directories to install, one a line")
    args = parser.parse_args(argv)

    if args.service:
        entries, members = service_requirements(args.service, args.root)
        origin = f"services/{args.service}"
    else:
        locked = parse_lock((args.root / "requirements" / "lock.txt").read_text(encoding="utf-8"))
        roots = {normalize(p) for p in args.package}
        missing = sorted(roots - locked.keys())
        if missing:
            raise SystemExit(f"not in requirements/lock.txt: {', '.join(missing)}")
        entries, members, origin = lock_closure(roots, locked), [], ", ".join(sorted(roots))
    args.out.write_text(render(entries, origin), encoding="utf-8")
    if args.members_out:
        args.members_out.write_text(
            "".join(f"{m.path.relative_to(args.root)}\n" for m in members), encoding="utf-8"
        )
    print(f"{origin}: {len(entries)} locked packages, {len(members)} workspace members", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
