"""Every shipped KQL query passes Microsoft's own Kusto parser, as Log Analytics would analyse it.

duckdb-kql runs the dialect it understands; Log Analytics runs Kusto. ``tests/kusto/check.js``
hands each query to ``Kusto.Language.KustoCode.ParseAndAnalyze`` (npm
``@kusto/language-service-next``, Kusto.Language built for JavaScript) with a global state holding
the columns of the tables the query reads: ours from ``schemas/tables.json``, APIM's log tables
from ``schemas/azure_tables.json``. A file's ``// Parameters: Name:type`` header becomes a
``declare query_parameters(...)`` statement, so each parameter has its declared type. Unknown
columns, type errors, unknown functions and syntax errors are diagnostics; none may be an error.
Checked: every ``.kql`` file (rollups, budgets, workbook, the workspace function, the LLM-log
join), the DCR's ``transformKql`` and the alert rules' queries in the Bicep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chargeback.core.schema import (
    ALERTS_TABLE,
    USAGE_TABLE,
    azure_table_columns,
    azure_table_names,
    table_columns,
)
from chargeback.edges.kqlrun import declared_parameters, parameter_defaults, query_files

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "kusto" / "check.js"
PACKAGE = REPO / "node_modules" / "@kusto" / "language-service-next" / "package.json"
# Log Analytics column types (tables.json) -> Kusto scalar types.
KUSTO_TYPES = {
    "string": "string",
    "int": "int",
    "long": "long",
    "real": "real",
    "boolean": "bool",
    "dateTime": "datetime",
    "dynamic": "dynamic",
}
# The columns of StorageBlobLogs that the dead-letter alert reads (Azure Monitor table reference).
STORAGE_BLOB_LOGS = [["TimeGenerated", "datetime"], ["OperationName", "string"], ["ObjectKey", "string"]]

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and PACKAGE.exists()) and not os.environ.get("CI"),
    reason="node and @kusto/language-service-next are needed; scripts/test runs npm ci (required in CI)",
)


def kusto_tables() -> dict[str, list[list[str]]]:
    """Every table a shipped query may read, with its columns and Kusto types."""
    tables = {
        table: [[c.name, KUSTO_TYPES[c.type]] for c in table_columns(table)]
        for table in (USAGE_TABLE, ALERTS_TABLE)
    }
    for table in azure_table_names():
        tables[table] = [[c.name, KUSTO_TYPES[c.type]] for c in azure_table_columns(table)]
    tables["StorageBlobLogs"] = STORAGE_BLOB_LOGS
    # A DCR transformation reads its input stream as the table `source`: the usage table's columns.
    tables["source"] = tables[USAGE_TABLE]
    return tables


def with_declared_parameters(text: str) -> str:
    """The query preceded by ``declare query_parameters(...)`` for its ``// Parameters:`` header."""
    declared = declared_parameters(text)
    if not declared:
        return text
    defaults = parameter_defaults(text)

    def item(name: str, kind: str) -> str:
        if name not in defaults:
            return f"{name}:{kind}"
        value = defaults[name]
        return f"{name}:{kind} = {str(value).lower() if isinstance(value, bool) else value}"

    return f"declare query_parameters({', '.join(item(n, k) for n, k in declared.items())});\n{text}"


def bicep_queries() -> dict[str, str]:
    """The KQL written in the Bicep: the DCR transformKql and the alert rules' queries."""
    queries: dict[str, str] = {}
    monitoring = (REPO / "infra" / "app" / "monitoring.bicep").read_text(encoding="utf-8")
    transforms = re.findall(r"transformKql:\s*'([^']*)'", monitoring)
    assert transforms, "monitoring.bicep has a DCR transformKql"
    for index, transform in enumerate(transforms):
        queries[f"monitoring.bicep transformKql #{index}"] = transform
    alerts = (REPO / "infra" / "app" / "alerts.bicep").read_text(encoding="utf-8")
    for name, body in re.findall(r"var (\w+Query) = (?:format\()?'''(.*?)'''", alerts, flags=re.S):
        # format() placeholders take the storage account and container names at deployment.
        queries[f"alerts.bicep {name}"] = re.sub(r"\{\d+\}", "placeholder", body)
    assert len(queries) >= 3, queries
    return queries


def shipped_queries() -> dict[str, str]:
    """Every query the product ships or deploys, by where it lives."""
    queries = {
        f"chargeback/kql/{name}.kql": with_declared_parameters(entry.read_text(encoding="utf-8"))
        for name, entry in query_files()
    }
    functions = REPO / "chargeback" / "kql" / "functions"
    for path in sorted(functions.glob("*.kql")) if functions.is_dir() else []:
        queries[f"chargeback/kql/functions/{path.name}"] = path.read_text(encoding="utf-8")
    return {**queries, **bicep_queries()}


def analyse(queries: dict[str, str], tables: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """Run Kusto.Language over the queries; the diagnostics of each, by name."""
    payload = {
        "tables": kusto_tables() if tables is None else tables,
        "queries": [{"name": name, "text": text} for name, text in queries.items()],
    }
    done = subprocess.run(
        ["node", str(CHECK)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {result["name"]: result["diagnostics"] for result in json.loads(done.stdout)}


def test_the_check_covers_every_kql_file_and_the_bicep_queries() -> None:
    """The rollups, budgets, workbook, the LLM-log join and the Bicep's KQL are all in the check."""
    names = set(shipped_queries())
    for expected in (
        "chargeback/kql/monthly_rollup.kql",
        "chargeback/kql/month_to_date_spend.kql",
        "chargeback/kql/gateway_llm_usage.kql",
        "chargeback/kql/stream_estimates.kql",
        "chargeback/kql/workbook/top_spenders.kql",
        "monitoring.bicep transformKql #0",
        "alerts.bicep unpricedQuery",
    ):
        assert expected in names
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "chargeback" / "kql").rglob("*.kql")}
    assert on_disk <= names


def test_every_shipped_query_has_no_error_diagnostic() -> None:
    """Zero error diagnostics from Microsoft's parser for every query, with its declared parameters."""
    diagnostics = analyse(shipped_queries())
    errors = {
        name: [f"{d['code']} {d['message']} (at {d['text']!r})" for d in found if d["severity"] == "Error"]
        for name, found in diagnostics.items()
    }
    assert {name: found for name, found in errors.items() if found} == {}


def test_the_parser_catches_what_duckdb_kql_would_let_through() -> None:
    """The check has teeth: an unknown column, a type error and an undeclared parameter are errors."""
    broken = {
        "unknown column": "AOAIChargeback_CL | summarize arg_max(UsageRevison, *) by RequestId",
        "type error": 'AOAIChargeback_CL | where TotalCost > "cheap"',
        "undeclared parameter": "AOAIChargeback_CL | where TimeGenerated >= MonthStart",
        "LLM log has no subscription": "ApiManagementGatewayLlmLog | project ApimSubscriptionId",
    }
    diagnostics = analyse(broken)
    for name, found in diagnostics.items():
        assert any(d["severity"] == "Error" for d in found), name
