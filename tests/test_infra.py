"""infra/ and azure.yaml: Bicep parses, checkov passes, and the Bicep agrees with the Python code.

Bicep cannot be compiled here (no .NET): pycep-parser parses it and checkov lints it, both from
``.venv-tools`` (scripts/install-tools), run as subprocesses so their pinned dependencies stay out
of the app's venv. Outside CI the tests that need them skip when they are missing; in CI they run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from chargeback.core.schema import ALERTS_TABLE, USAGE_TABLE, table_columns
from chargeback.settings import Settings

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
TOOLS = REPO / ".venv-tools" / "bin"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
TABLES_JSON = REPO / "chargeback" / "schemas" / "tables.json"
WORKBOOK_KQL = REPO / "chargeback" / "kql" / "workbook"
FUNCTION_KQL = REPO / "chargeback" / "kql" / "functions" / "AOAIChargeback.kql"
FUNCTION_BICEP = INFRA / "app" / "function.bicep"

# Settings that only make sense on a developer's machine, never as Function App settings.
LOCAL_ONLY = {
    "CHARGEBACK_DUCKDB_PATH": "the embedded DuckDB store; Azure writes to Log Analytics",
    "STORAGE_CONNECTION_STRING": "Azurite only; Azure uses STORAGE_BLOB_ENDPOINT with the identity",
    "DEADLETTER_PATH": "local folder; Azure uses DEADLETTER_CONTAINER",
    "EXPORTS_PATH": "local folder; Azure uses EXPORTS_CONTAINER",
    "RATE_CARD_PATH": "unset in Azure: the rate card comes from CONFIG_CONTAINER",
    "DEPLOYMENTS_PATH": "unset in Azure: the deployments map comes from CONFIG_CONTAINER",
    "BUDGETS_PATH": "unset in Azure: the budgets file comes from CONFIG_CONTAINER",
}
# App settings the Functions host reads itself (not chargeback/settings.py).
HOST_SETTINGS = re.compile(
    r"^(AzureWebJobsStorage__\w+|APPLICATIONINSIGHTS_\w+|EVENTHUB__(credential|clientId))$"
)


def tool(name: str) -> Path:
    """A tool from .venv-tools; skip without it outside CI, fail without it in CI."""
    path = TOOLS / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: scripts/install-tools must run in CI")
        pytest.skip(f"{path} is missing: run scripts/install-tools")
    return path


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def app_settings() -> dict[str, str]:
    """The Function App settings in function.bicep: name -> Bicep value expression."""
    block = re.search(r"^var appSettings = \{\n(.*?)^\}", read(FUNCTION_BICEP), re.S | re.M)
    assert block, "function.bicep declares its settings as `var appSettings = { ... }`"
    pairs = re.findall(r"^\s+(\w+): (.+)$", block.group(1), re.M)
    return dict(pairs)


# --- parsing and linting ---------------------------------------------------------------------


def test_every_bicep_file_parses() -> None:
    """Every .bicep file under infra/ parses with pycep-parser."""
    python = tool("python")
    script = (
        "import sys\nfrom pathlib import Path\nfrom pycep import BicepParser\n"
        "parser = BicepParser()\nfor f in sys.argv[1:]:\n    parser.parse(text=Path(f).read_text())\n"
    )
    assert BICEP_FILES
    for path in BICEP_FILES:
        done = subprocess.run(
            [str(python), "-c", script, str(path)], capture_output=True, text=True, check=False, timeout=300
        )
        assert done.returncode == 0, f"{path.relative_to(REPO)}:\n{done.stderr[-2000:]}"


def test_checkov_passes_with_every_skip_justified() -> None:
    """checkov (bicep) fails no check, and every skip carries its reason inline in the Bicep."""
    checkov = tool("checkov")
    done = subprocess.run(
        [str(checkov), "--framework", "bicep", "--skip-download", "-d", str(INFRA), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for skipped in report["results"]["skipped_checks"]:
        reason = (skipped["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


# --- one schema for Python and Bicep ---------------------------------------------------------


def test_tables_and_dcr_streams_load_the_python_schema_file() -> None:
    """Tables and DCR streams load chargeback/schemas/tables.json, the file chargeback/schema.py reads."""
    monitoring = INFRA / "app" / "monitoring.bicep"
    text = read(monitoring)
    loads = re.findall(r"loadJsonContent\('([^']+)'\)", text)
    assert loads == ["../../chargeback/schemas/tables.json"]
    assert (monitoring.parent / loads[0]).resolve() == TABLES_JSON.resolve()
    python_file = Path(str(resources.files("chargeback").joinpath("schemas", "tables.json")))
    assert python_file.resolve() == TABLES_JSON.resolve()
    # Table columns and both stream declarations are for-expressions over the loaded file.
    assert "columns: [for column in tableSchemas[tableName].columns:" in text
    for table in (USAGE_TABLE, ALERTS_TABLE):
        assert f"'Custom-{table}': {{\n        columns: [for column in tableSchemas.{table}.columns:" in text


def test_no_bicep_file_lists_columns_by_hand() -> None:
    """No Bicep file spells out a column ({name, type} pairs naming a table column) by hand."""
    names = {c.name for table in (USAGE_TABLE, ALERTS_TABLE) for c in table_columns(table)}
    for path in BICEP_FILES:
        declared = set(re.findall(r"name: '(\w+)'\s*\n\s*type: '", read(path)))
        assert not declared & names, f"{path.name} declares columns {sorted(declared & names)} by hand"


def test_column_types_map_to_tables_api_and_dcr_types() -> None:
    """Each column type is a Tables API type; the Bicep mapping (dateTime->datetime) gives a DCR type."""
    tables_api = {"string", "int", "long", "real", "boolean", "dateTime", "guid", "dynamic"}
    dcr = {"string", "int", "long", "real", "boolean", "datetime", "dynamic"}
    spec = json.loads(read(TABLES_JSON))
    for table in (USAGE_TABLE, ALERTS_TABLE):
        for column in spec[table]["columns"]:
            assert column["type"] in tables_api
            assert ("datetime" if column["type"] == "dateTime" else column["type"]) in dcr
    assert "type: column.type == 'dateTime' ? 'datetime' : column.type" in read(
        INFRA / "app" / "monitoring.bicep"
    )


def test_every_setting_is_a_function_app_setting_or_local_only() -> None:
    """Each chargeback/settings.py name is set on the Function App, or is listed here as local-only."""
    settings = app_settings()
    bicep_names = {name.upper(): name for name in settings}
    for spec in fields(Settings):
        env = spec.name.upper()
        assert (env in bicep_names) != (env in LOCAL_ONLY), (
            f"{env}: in Bicep app settings or local-only, not both"
        )
    known = {spec.name.upper() for spec in fields(Settings)}
    for name in settings:
        assert name.upper() in known or HOST_SETTINGS.match(name), f"{name} is not a setting anyone reads"


def test_function_app_settings_values() -> None:
    """The Function App writes to Log Analytics through identity-based connections, never keys."""
    settings = app_settings()
    assert settings["CHARGEBACK_SINK"] == "'loganalytics'"
    assert settings["EVENTHUB__fullyQualifiedNamespace"] == "eventHubNamespaceFqdn"
    assert (
        settings["EVENTHUB__credential"] == settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    )
    assert settings["LOGS_STREAM_NAME"] == "usageStreamName"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    text = read(FUNCTION_BICEP)
    assert "name: 'python'" in text
    assert "version: '3.11'" in text
    assert "tier: 'FlexConsumption'" in text
    assert not re.search(r"AccountKey|SharedAccessKey|listKeys", "\n".join(read(p) for p in BICEP_FILES))


def test_monitoring_outputs_feed_the_settings() -> None:
    """Logs Ingestion settings come from the DCR's endpoint and immutable id; the workspace, customerId."""
    text = read(INFRA / "app" / "monitoring.bicep")
    assert "kind: 'Direct'" in text
    assert "dataCollectionRule.properties.endpoints.logsIngestion" in text
    assert "dataCollectionRule.properties.immutableId" in text
    assert "workspace.properties.customerId" in text
    assert "transformKql: 'source'" in text
    assert "outputStream: 'Custom-${tableName}'" in text


# --- resources, roles and the APIM wiring ----------------------------------------------------

ROLES = {
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
}


def test_every_role_guid_is_commented_with_its_role() -> None:
    """rbac.bicep assigns the roles the pipeline needs, each GUID under a comment naming the role."""
    lines = read(INFRA / "app" / "rbac.bicep").splitlines()
    guids = {
        i: m.group(0)
        for i, line in enumerate(lines)
        if (m := re.search(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", line))
    }
    assert set(ROLES) <= set(guids.values())
    for index, guid in guids.items():
        above = index - 1
        while above >= 0 and lines[above].strip().startswith("//"):
            above -= 1
        comment = " ".join(lines[above + 1 : index])
        assert comment, f"{guid} has no comment above it"
        if guid in ROLES:
            assert ROLES[guid] in comment, f"{guid} is not commented as {ROLES[guid]}"


def test_identity_and_keys_are_locked_down() -> None:
    """Event Hubs and Log Analytics disable local auth; Storage disallows shared keys and public blobs."""
    assert "disableLocalAuth: true" in read(INFRA / "app" / "eventhubs.bicep")
    assert "disableLocalAuth: true" in read(INFRA / "app" / "monitoring.bicep")
    storage = read(INFRA / "app" / "storage.bicep")
    assert "allowSharedKeyAccess: false" in storage
    assert "allowBlobPublicAccess: false" in storage
    assert "tierToCool: {\n                  daysAfterModificationGreaterThan: 30" in storage
    assert "delete: {\n                  daysAfterModificationGreaterThan: deadletterRetentionDays" in storage


def test_published_exports_are_worm_and_the_user_reads_only_two_containers() -> None:
    """Exports: version-level immutability with a default policy (WORM); the user reads two containers."""
    storage = read(INFRA / "app" / "storage.bicep")
    assert "immutableStorageWithVersioning: {\n      enabled: true" in storage
    assert "isVersioningEnabled: true" in storage
    assert re.search(r"immutabilityPolicies@[\d-]+' = \{\n  parent: exports\n", storage)
    assert "immutabilityPeriodSinceCreationInDays: exportsImmutabilityDays" in storage
    assert "allowProtectedAppendWrites: false" in storage
    rbac = read(INFRA / "app" / "rbac.bicep")
    reader = rbac[rbac.index("resource userReadsBlobs") :]
    assert "scope: readableContainers[i]" in reader
    assert "scope: storage\n" not in reader
    main = read(INFRA / "main.bicep")
    assert "param deadletterRetentionDays int = 30" in main
    assert "DEADLETTER_REDACT_BODIES: string(deadletterRedactBodies)" in read(FUNCTION_BICEP)


def test_apim_gets_the_policy_with_the_logger_substituted() -> None:
    """apim.bicep loads the policy and fragment files and replaces the logger named value the policy uses."""
    text = read(INFRA / "app" / "apim.bicep")
    assert "loggerType: 'azureEventHub'" in text
    assert "identityClientId: 'SystemAssigned'" in text
    assert (
        "replace(loadTextContent('../../policy/aoai-chargeback.policy.xml'), "
        "'{{${namedValueName}}}', logger.name)" in text
    )
    assert "loadTextContent('../../policy/aoai-chargeback.fragment.xml')" in text
    assert "var namedValueName = 'aoai-chargeback-logger-id'" in text
    for name in ("aoai-chargeback.policy.xml", "aoai-chargeback.fragment.xml"):
        assert "{{aoai-chargeback-logger-id}}" in read(REPO / "policy" / name)


def test_every_loaded_file_exists() -> None:
    """Every loadTextContent/loadJsonContent path in the Bicep resolves to a file in the repo."""
    for path in BICEP_FILES:
        for loaded in re.findall(r"load(?:Text|Json)Content\('([^']+)'\)", read(path)):
            assert (path.parent / loaded).is_file(), f"{path.name} loads missing {loaded}"


def test_parameters_file_matches_main() -> None:
    """main.parameters.json sets only parameters main.bicep declares; main.bicep is subscription-scoped."""
    main = read(INFRA / "main.bicep")
    declared = set(re.findall(r"^param (\w+) ", main, re.M))
    given = set(json.loads(read(INFRA / "main.parameters.json"))["parameters"])
    assert given <= declared
    assert {"environmentName", "location"} <= given
    assert "targetScope = 'subscription'" in main
    assert "resourceToken = toLower(uniqueString(subscription().id, environmentName, location))" in main
    assert "'azd-env-name': environmentName" in main
    assert set(json.loads(read(INFRA / "abbreviations.json")).values())


def test_azure_yaml_deploys_the_repo_root_as_a_function() -> None:
    """azure.yaml deploys the repo root with host: function to the app tagged with the same service name."""
    text = read(REPO / "azure.yaml")
    service = re.search(r"^services:\n  (\S+):\n((?:    .*\n)+)", text, re.M)
    assert service
    body = service.group(2)
    assert "host: function" in body
    assert "project: ." in body
    assert "language: python" in body
    assert f"'azd-service-name': '{service.group(1)}'" in read(FUNCTION_BICEP)


# --- workbook and alerts ---------------------------------------------------------------------


def test_workbook_loads_every_workbook_query() -> None:
    """workbook.bicep loads exactly the .kql files in chargeback/kql/workbook/."""
    loaded = set(re.findall(r"chargeback/kql/workbook/(\w+\.kql)", read(INFRA / "app" / "workbook.bicep")))
    assert loaded == {p.name for p in WORKBOOK_KQL.glob("*.kql")}
    assert len(loaded) == 8
    assert "name: 'TagKey'" in read(INFRA / "app" / "workbook.bicep")  # cost_by_tag.kql's {TagKey}


def _function_body() -> str:
    """The body of AOAIChargeback() without its comment lines."""
    lines = read(FUNCTION_KQL).splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("//"))


def test_workbook_queries_dedupe_first() -> None:
    """Each workbook query reads the usage table through the body of AOAIChargeback(), inlined."""
    body = _function_body()
    for path in WORKBOOK_KQL.glob("*.kql"):
        text = read(path)
        assert body in text, path.name
        assert text.count("AOAIChargeback_CL") == body.count("AOAIChargeback_CL"), path.name
        assert "arg_max(UsageRevision, *) by RequestId" not in text.replace(body, ""), path.name


def test_workspace_saves_the_dedupe_as_a_function() -> None:
    """monitoring.bicep saves AOAIChargeback() in the workspace from the same .kql file."""
    text = read(INFRA / "app" / "monitoring.bicep")
    assert "Microsoft.OperationalInsights/workspaces/savedSearches@" in text
    assert "functionAlias: 'AOAIChargeback'" in text
    assert "loadTextContent('../../chargeback/kql/functions/AOAIChargeback.kql')" in text


def empty_usage_table() -> tuple[Any, list[str]]:
    """A duckdb-kql connection holding an empty AOAIChargeback_CL with tables.json's columns, keyless
    like Log Analytics; and the column names in order."""
    import duckdb_kql

    from chargeback.edges.store import DUCKDB_TYPES

    con = duckdb_kql.connect()
    columns = table_columns(USAGE_TABLE)
    declared = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in columns)
    con.sql(f'CREATE TABLE "{USAGE_TABLE}" ({declared})')
    return con, [c.name for c in columns]


def test_function_keeps_one_row_per_call_with_the_latest_revision() -> None:
    """AOAIChargeback()'s body drops redeliveries, keeps the highest UsageRevision, then the earliest row."""
    import duckdb_kql

    con, names = empty_usage_table()
    when = datetime(2026, 10, 5, 12, 0)

    def row(request_id: str, revision: int, tokens: int, minutes: int) -> None:
        values = dict.fromkeys(names)
        values.update(
            TimeGenerated=when + timedelta(minutes=minutes),
            RequestId=request_id,
            SubscriptionId="team-a",
            UsageRevision=revision,
            TotalTokens=tokens,
        )
        marks = ", ".join("?" for _ in names)
        con.execute(f'INSERT INTO "{USAGE_TABLE}" VALUES ({marks})', [values[n] for n in names])

    row("r1", 0, 100, 0)
    row("r1", 0, 100, 1)  # an Event Hub redelivery: the same row again
    row("r1", 1, 250, 2)  # APIM's LLM log: the superseding revision
    row("r2", 0, 40, 0)
    row("r2", 0, 40, 5)  # a redelivery only
    row("r3", 0, 7, 0)
    row("r4", 0, 60, 3)  # a conflict from another batch: the same revision, different usage...
    row("r4", 0, 50, 1)  # ...and the earlier row, which wins (monthly_rollup's rule), sent last
    relation = duckdb_kql.kql(con, _function_body() + "| project RequestId, UsageRevision, TotalTokens")
    assert sorted(relation.fetchall()) == [("r1", 1, 250), ("r2", 0, 40), ("r3", 0, 7), ("r4", 0, 50)]


def _duckdb_with_usage() -> Any:
    """DuckDB with both tables as Log Analytics holds them (duplicates allowed), and a few rows."""
    import duckdb_kql

    from chargeback.edges.store import DUCKDB_TYPES

    con = duckdb_kql.connect()
    for table in (USAGE_TABLE, ALERTS_TABLE):
        columns = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in table_columns(table))
        con.sql(f'CREATE TABLE "{table}" ({columns})')
    now = datetime.now(UTC).replace(tzinfo=None)
    # Rows this month, even in a month's first minutes (budget burn looks at the current month only).
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    names = [c.name for c in table_columns(USAGE_TABLE)]

    def row(
        request_id: str,
        sub: str,
        model: str,
        cost: float | None,
        *,
        status: str,
        when: datetime,
        tags: str = "{}",
    ) -> None:
        values = dict.fromkeys(names)
        values.update(
            TimeGenerated=when,
            RequestId=request_id,
            SubscriptionId=sub,
            SubscriptionName=sub.upper(),
            Deployment=model,
            Model=model,
            PromptTokens=1000,
            CachedTokens=0,
            CompletionTokens=100,
            ReasoningTokens=0,
            TotalTokens=1100,
            UsageSource="reported",
            TotalCost=cost,
            Currency="USD",
            PricingStatus=status,
            Tags=tags,
        )
        marks = ", ".join("?" for _ in names)
        con.execute(f'INSERT INTO "{USAGE_TABLE}" VALUES ({marks})', [values[n] for n in names])

    tagged = '{"project": "apollo"}'
    row(
        "r1",
        "team-a",
        "gpt-4o",
        2.0,
        status="priced",
        when=max(now - timedelta(seconds=5), month_start),
        tags=tagged,
    )
    row(
        "r1", "team-a", "gpt-4o", 2.0, status="priced", when=now - timedelta(minutes=5), tags=tagged
    )  # at-least-once duplicate
    row(
        "r2", "team-b", "gpt-4o-mini", 0.5, status="priced", when=max(now - timedelta(seconds=3), month_start)
    )
    row(
        "r3",
        "team-b",
        "mystery-model",
        None,
        status="unpriced",
        when=max(now - timedelta(seconds=1), month_start),
    )
    alert_names = [c.name for c in table_columns(ALERTS_TABLE)]
    alert = dict.fromkeys(alert_names)
    marks = ", ".join("?" for _ in alert_names)
    month = now.strftime("%Y-%m")
    for sub, budget, cost_center in (("team-a", 10.0, "CC-1"), ("team-z", 50.0, "CC-9")):
        # The budget check's "budget" rows; team-z has a budget but no call and no alert yet.
        alert = dict.fromkeys(alert_names)
        alert.update(
            TimeGenerated=now,
            AlertId=f"{month}/{sub}/budget/x",
            Month=month,
            SubscriptionId=sub,
            SubscriptionName=sub.upper(),
            CostCenter=cost_center,
            Owner="owner",
            AlertKind="budget",
            Budget=budget,
            Currency="USD",
        )
        con.execute(f'INSERT INTO "{ALERTS_TABLE}" VALUES ({marks})', [alert[n] for n in alert_names])
    return con


def test_workbook_queries_run_on_duckdb_and_count_each_call_once() -> None:
    """Every workbook query runs on duckdb-kql's KQL subset and counts a duplicated call once."""
    import duckdb_kql

    con = _duckdb_with_usage()
    results = {}
    for path in sorted(WORKBOOK_KQL.glob("*.kql")):
        # The workbook substitutes its parameters into the text; {TagKey} is the tag key picked.
        relation = duckdb_kql.kql(con, read(path).replace("{TagKey}", "project"))
        results[path.stem] = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    by_sub = {r["SubscriptionId"]: r for r in results["cost_by_subscription"]}
    assert by_sub["team-a"]["TotalCost"] == pytest.approx(2.0)
    assert by_sub["team-a"]["Calls"] == 1
    assert results["top_spenders"][0]["SubscriptionId"] == "team-a"
    burn = {r["SubscriptionId"]: r for r in results["budget_burn"]}
    assert burn["team-a"]["Spend"] == pytest.approx(2.0)
    assert burn["team-a"]["Budget"] == pytest.approx(10.0)
    assert burn["team-a"]["Forecast"] >= burn["team-a"]["Spend"]
    assert burn["team-a"]["CostCenter"] == "CC-1"
    assert (burn["team-z"]["Budget"], burn["team-z"]["Spend"], burn["team-z"]["CostCenter"]) == (
        50.0,
        0.0,
        "CC-9",
    )
    assert burn["team-b"]["Budget"] is None
    centers = {r["CostCenter"]: r for r in results["cost_by_cost_center"]}
    assert (centers["CC-1"]["Spend"], centers["CC-1"]["Budget"], centers["CC-1"]["Calls"]) == (2.0, 10.0, 1)
    assert (centers["CC-9"]["Spend"], centers["CC-9"]["Budget"]) == (0.0, 50.0)
    assert centers["(no budget)"]["Spend"] == pytest.approx(0.5)  # team-b: no budget row
    by_tag = {r["TagValue"]: r for r in results["cost_by_tag"]}
    assert (by_tag["apollo"]["TotalCost"], by_tag["apollo"]["Calls"]) == (2.0, 1)
    assert (by_tag["(untagged)"]["TotalCost"], by_tag["(untagged)"]["Calls"]) == (0.5, 2)
    assert [(r["Deployment"], r["Calls"]) for r in results["unpriced_usage"]] == [("mystery-model", 1)]
    assert sum(r["Calls"] for r in results["usage_source_mix"]) == 3
    assert sum(r["Calls"] for r in results["cost_by_model_month"]) == 3


def test_alert_rules_cover_budgets_unpriced_usage_and_dead_letters() -> None:
    """alerts.bicep alerts on budget rows, unpriced usage and dead-letter writes, through an action group."""
    text = read(INFRA / "app" / "alerts.bicep")
    assert text.count("Microsoft.Insights/scheduledQueryRules@") == 3
    assert "AOAIChargebackAlerts_CL" in text
    assert 'where PricingStatus == "unpriced"' in text
    assert "StorageBlobLogs" in text
    assert "category: 'StorageWrite'" in read(INFRA / "app" / "storage.bicep")
    assert "emailReceivers: empty(alertEmail) ? [] : [" in text
    assert text.count("actionGroup.id") == 4


def test_stream_estimates_keep_only_calls_whose_latest_revision_waits() -> None:
    """stream_estimates.kql over Log Analytics' rows: a superseded estimate is not counted, a waiting is."""
    import duckdb_kql

    from chargeback.edges.kqlrun import bind

    con, names = empty_usage_table()
    when = datetime(2026, 10, 5, 12, 0)

    def row(request_id: str, revision: int, unknown: str, cost: float) -> None:
        values = dict.fromkeys(names)
        values.update(
            TimeGenerated=when + timedelta(minutes=revision),
            RequestId=request_id,
            SubscriptionId="team-a",
            Currency="USD",
            UsageRevision=revision,
            UsageUnknown=unknown,
            PromptTokens=100,
            TotalCost=cost,
        )
        marks = ", ".join("?" for _ in names)
        con.execute(f'INSERT INTO "{USAGE_TABLE}" VALUES ({marks})', [values[n] for n in names])

    row("s1", 0, "completion-tokens", 1.0)  # superseded below by APIM's LLM log
    row("s1", 1, "cached-tokens,reasoning-tokens", 3.0)
    row("s2", 0, "completion-tokens", 2.0)  # still waiting, and redelivered
    row("s2", 0, "completion-tokens", 2.0)
    row("r3", 0, "", 5.0)  # reported usage
    text = bind(
        read(REPO / "chargeback" / "kql" / "stream_estimates.kql"),
        {"MonthStart": datetime(2026, 10, 1, tzinfo=UTC), "MonthEnd": datetime(2026, 11, 1, tzinfo=UTC)},
    )
    relation = duckdb_kql.kql(con, text)
    rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    assert [(r["SubscriptionId"], r["Requests"], r["TotalCost"]) for r in rows] == [("team-a", 1, 2.0)]


def test_the_webhook_url_is_a_key_vault_reference_read_with_the_apps_identity() -> None:
    """ALERT_WEBHOOK_URL is a Key Vault reference; the identity may read that one secret, nothing else."""
    assert app_settings()["ALERT_WEBHOOK_URL"] == "alertWebhookSetting"
    assert "keyVaultReferenceIdentity: identityId" in read(FUNCTION_BICEP)
    vault = read(INFRA / "app" / "keyvault.bicep")
    assert "'@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/alert-webhook-url)'" in vault
    assert "enableRbacAuthorization: true" in vault
    assert "enablePurgeProtection: true" in vault
    assigned = vault[vault.index("resource functionReadsWebhook") :]
    assert "scope: webhookSecret" in assigned
    assert "4633458b-17de-408a-b874-0445c86b69e6" in vault  # Key Vault Secrets User
    main = read(INFRA / "main.bicep")
    assert "alertWebhookSetting: keyVault.outputs.alertWebhookSetting" in main
    assert "@secure()\n@description('Optional https webhook" in main
