"""Shared by the deployment tests: deploy/validate.py loaded as a module, overlays rendered once."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_validate() -> ModuleType:
    name = "deploy_validate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "validate.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def dv() -> ModuleType:
    """deploy/validate.py: render(), the checks, container_env() ..."""
    return _load_validate()


@pytest.fixture(scope="session")
def rendered(dv: ModuleType) -> dict[str, list[dict[str, Any]]]:
    return {overlay: dv.render(overlay) for overlay in dv.OVERLAYS}


@pytest.fixture
def kind_objs(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A private copy of the rendered kind overlay, safe to break."""
    return copy.deepcopy(rendered["kind"])
