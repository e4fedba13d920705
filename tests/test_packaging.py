"""Packaging: the Function App's manifest, the deploy ignore list and the shipped data files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> dict[str, str]:
    out = {}
    for raw in requirements:
        line = raw.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower()
            out[name] = line
    return out


def test_requirements_txt_matches_pyproject_dependencies():
    """The Function App installs exactly the package's runtime dependencies, same pins."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = (REPO / "requirements.txt").read_text().splitlines()
    assert _names(project) == _names(runtime)


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
