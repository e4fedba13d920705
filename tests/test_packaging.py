"""Packaging: the Function App's manifest, the deploy ignore list and the shipped data files."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")


def _requirements(lines: list[str]) -> set[tuple[str, str, str]]:
    """(name, specifier, marker) of each requirement line, comments and blanks skipped."""
    out: set[tuple[str, str, str]] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            out.add(
                (
                    canonicalize_name(requirement.name),
                    str(requirement.specifier),
                    str(requirement.marker or ""),
                )
            )
    return out


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def test_requirements_txt_matches_pyproject_dependencies():
    """The Function App installs exactly the package's runtime dependencies, same pins and markers."""
    runtime = (REPO / "requirements.txt").read_text().splitlines()
    assert _requirements(_project()["dependencies"]) == _requirements(runtime)


@pytest.mark.parametrize("python", SUPPORTED_PYTHONS)
def test_each_supported_python_gets_one_azure_functions_that_exists_for_it(python: str):
    """3.11/3.12 get azure-functions 1.26.0 (their newest); 3.13 gets the 2.x line (1.26.0 needs < 3.13)."""
    assert SpecifierSet(_project()["requires-python"]).contains(python)
    chosen = [
        Requirement(line)
        for line in _project()["dependencies"]
        if canonicalize_name(Requirement(line).name) == "azure-functions"
    ]
    applying = [r for r in chosen if r.marker is None or r.marker.evaluate({"python_version": python})]
    assert len(applying) == 1
    expected = "==1.26.0" if python < "3.13" else "==2.3.0"
    assert str(applying[0].specifier) == expected


def test_funcignore_keeps_tests_and_tools_out_of_the_deployment_but_not_the_package():
    """tests/, bench/, infra/ and local state are not deployed; chargeback/ and function_app.py are."""
    ignored = {line.strip() for line in (REPO / ".funcignore").read_text().splitlines() if line.strip()}
    assert {"tests/", "bench/", "infra/", ".venv/", "node_modules/", "local.settings.json"} <= ignored
    assert not {"chargeback/", "chargeback", "function_app.py", "host.json", "requirements.txt"} & ignored


def test_package_data_ships_schemas_config_and_encodings():
    """Schema JSON, config CSVs and tiktoken encodings ship inside the package: nothing is downloaded."""
    package = REPO / "chargeback"
    assert (package / "schemas" / "tables.json").exists()
    assert (package / "schemas" / "event.v1.schema.json").exists()
    assert (package / "config" / "rate_card.csv").exists()
    assert sorted(p.name for p in (package / "encodings").glob("*.tiktoken.gz")) == [
        "cl100k_base.tiktoken.gz",
        "o200k_base.tiktoken.gz",
    ]
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "chargeback"
    ]
    assert {"schemas/*.json", "config/*.csv", "encodings/*.tiktoken.gz"} <= set(data)


def test_importing_the_function_app_does_not_import_heavy_libraries():
    """Cold start: function_app imports neither pandas, tiktoken, duckdb nor the Azure SDK clients."""
    import subprocess
    import sys

    code = (
        "import sys, function_app; heavy = [m for m in ('pandas', 'tiktoken', 'duckdb',"
        " 'azure.monitor.ingestion',"
        " 'azure.storage.blob') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
