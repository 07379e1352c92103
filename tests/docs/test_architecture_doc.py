"""docs/architecture.md stays true: every ``module:function`` it names exists; it names the event path."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
#: `package.module:Name` or `package.module:Class.method`, as the page writes them (in backquotes)
REFERENCE = re.compile(
    r"`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]\w*)*)`"
)


def references() -> list[tuple[str, str]]:
    return sorted(set(REFERENCE.findall(DOC.read_text(encoding="utf-8"))))


def test_the_page_names_functions() -> None:
    names = {f"{module}:{attr}" for module, attr in references()}
    assert len(names) >= 20
    # the path of one event: poll → decode → write → dead letters → commit
    for step in (
        "consumer_runtime.runner:ConsumerRunner._poll_once",
        "consumer_runtime.core:Batch.decode",
        "consumer_runtime.core:advance",
        "consumer_runtime.runner:ConsumerRunner._dead_letter",
        "consumer_runtime.runner:ConsumerRunner._commit",
    ):
        assert step in names


@pytest.mark.parametrize(("module", "attr"), references(), ids=lambda value: str(value))
def test_every_named_function_exists(module: str, attr: str) -> None:
    target: object = importlib.import_module(module)
    for part in attr.split("."):
        assert hasattr(target, part), f"docs/architecture.md names {module}:{attr}, which does not exist"
        target = getattr(target, part)
    assert callable(target), f"{module}:{attr} is not a function or class"
