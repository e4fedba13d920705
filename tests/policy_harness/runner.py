"""Turn an APIM policy XML into a C# program that runs its expressions on Mono.

Every ``@(...)`` and ``@{...}`` in the policy becomes a static method taking the ``context``
stand-in (``ApimContext.cs``); the policy's elements (set-variable, choose, set-body,
log-to-eventhub, include-fragment, base) become calls on the stand-in ``Runner``, in document
order. The program plays each scenario file it is given through inbound, backend, outbound and
on-error as the gateway would, and prints one JSON result per scenario.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parent
REPO = HARNESS.parent.parent
POLICY_DIR = REPO / "policy"
NEWTONSOFT = Path("/usr/lib/cli/Newtonsoft.Json-5.0/Newtonsoft.Json.dll")
FRAGMENT_ID = "aoai-chargeback"
LOGGER_NAMED_VALUE = "aoai-chargeback-logger-id"
CAPTURE_STREAMS_NAMED_VALUE = "aoai-chargeback-capture-streams"
# The named values Bicep creates, with their shipped values; APIM substitutes {{name}} in the
# policy text (expressions included) before it runs, and refuses a policy naming an unknown one.
THROTTLE_NAMED_VALUE = "aoai-chargeback-throttled"
NAMED_VALUES = {
    LOGGER_NAMED_VALUE: "aoai-chargeback",
    CAPTURE_STREAMS_NAMED_VALUE: "false",
    THROTTLE_NAMED_VALUE: "e30=",  # base64 of {}: nobody throttled (infra/app/apim-enforcement.bicep)
}
_NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")

# The namespaces APIM makes available to expressions (their allowed types, not all of them).
USINGS = """using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;
using ApimStandIn;
"""

SECTIONS = ("inbound", "backend", "outbound", "on-error")

DRIVER = """
public static class Program
{
    public static int Main(string[] args)
    {
        var results = new JArray();
        foreach (var path in args)
        {
            var runner = new Runner(JObject.Parse(System.IO.File.ReadAllText(path)));
            Play(runner);
            results.Add(runner.Result());
        }
        Console.WriteLine(results.ToString(Formatting.None));
        return 0;
    }

    private static void Play(Runner r)
    {
        var s = r.Scenario;
        string failAt = (string)s["failAt"];
        var error = s["error"] as JObject;
        bool onError = false;
        try
        {
            if (failAt == "before-inbound")
            {
                r.Fail((string)error["source"], (string)error["reason"], (int?)error["status"] ?? 0);
                onError = true;
            }
            else
            {
                r.Section = "inbound"; Policy.Inbound(r);
                if (r.Returned) { return; }
                if ((bool?)s["cacheHit"] == true) { r.Respond(); }
                else { r.Section = "backend"; Policy.Backend(r); r.Forward(); }
                if (failAt == "backend")
                {
                    r.Fail((string)error["source"], (string)error["reason"], (int?)error["status"] ?? 0);
                    onError = true;
                }
                else { r.Section = "outbound"; Policy.Outbound(r); }
            }
        }
        catch (Exception ex)
        {
            r.ExpressionErrors.Add(r.Section + ": " + ex);
            r.Fail("expression", ex.GetType().Name, 500);
            onError = true;
        }
        if (!onError) { return; }
        try { r.Section = "on-error"; Policy.OnError(r); }
        catch (Exception ex) { r.ExpressionErrors.Add("on-error: " + ex); }
    }
}
"""


def is_expression(value: str | None) -> bool:
    """True for an APIM policy expression: ``@(...)`` or ``@{...}``."""
    text = (value or "").strip()
    return (text.startswith("@(") and text.endswith(")")) or (text.startswith("@{") and text.endswith("}"))


@dataclass
class Expression:
    """One C# expression found in the policy, where it came from, and its method name."""

    code: str
    where: str
    method: str

    @property
    def is_block(self) -> bool:
        return self.code.strip().startswith("@{")


@dataclass
class Program:
    """The generated C# for one policy: expression methods plus the section bodies."""

    expressions: list[Expression] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)
    named_values: dict[str, str] = field(default_factory=lambda: dict(NAMED_VALUES))

    def expression(self, code: str, where: str) -> str:
        method = f"E{len(self.expressions)}"
        self.expressions.append(Expression(self.substitute(code.strip(), where), where, method))
        return f"{method}(context)"

    def substitute(self, code: str, where: str) -> str:
        """Replace each ``{{named-value}}`` as APIM does; an unknown one is an error, as in APIM."""

        def value(match: re.Match[str]) -> str:
            if match[1] not in self.named_values:
                raise ValueError(f"{where}: named value {match[1]!r} does not exist")
            return self.named_values[match[1]]

        return _NAMED_VALUE.sub(value, code)

    def source(self) -> str:
        lines = [USINGS, "public static class Policy", "{"]
        for expr in self.expressions:
            lines.append(f"    // {expr.where}")
            body = expr.code[1:]
            if expr.is_block:
                lines.append(f"    public static object {expr.method}(Context context)")
                lines.append("    " + body)
            else:
                lines.append(f"    public static object {expr.method}(Context context) {{ return {body}; }}")
        for section in SECTIONS:
            name = {"on-error": "OnError"}.get(section, section.capitalize())
            lines.append(f"    public static void {name}(Runner r)")
            lines.append("    {")
            lines.append("        var context = r.Context;")
            lines.extend("        " + line for line in self.sections.get(section, []))
            lines.append("    }")
        lines.append("}")
        lines.append(DRIVER)
        return "\n".join(lines)


def load_fragment(fragment_id: str) -> ET.Element:
    """The ``<fragment>`` element that an ``include-fragment`` names (only ours exists here)."""
    if fragment_id != FRAGMENT_ID:
        raise ValueError(f"unknown fragment {fragment_id!r}")
    return ET.parse(POLICY_DIR / "aoai-chargeback.fragment.xml").getroot()


def _value(program: Program, value: str, where: str) -> str:
    if is_expression(value):
        return program.expression(value, where)
    return json.dumps(value)


def translate(program: Program, element: ET.Element, out: list[str], where: str) -> None:
    """Append the C# statements for one policy element (and its children) to ``out``."""
    tag = element.tag
    here = f"{where}/{tag}"
    if tag == "base":
        return
    if tag == "set-variable":
        name = element.attrib["name"]
        out.append(f"r.SetVariable({json.dumps(name)}, {_value(program, element.attrib['value'], here)});")
    elif tag == "choose":
        keyword = "if"
        for child in element:
            if child.tag == "when":
                condition = program.expression(child.attrib["condition"], f"{here}/when")
                out.append(f"{keyword} ((bool){condition})")
                keyword = "else if"
            elif child.tag == "otherwise":
                out.append("else")
            else:
                raise ValueError(f"unexpected <{child.tag}> in <choose>")
            out.append("{")
            for grandchild in child:
                translate(program, grandchild, out, f"{here}/{child.tag}")
            out.append("}")
    elif tag == "set-body":
        out.append(f"r.SetBody({_value(program, element.text or '', here)});")
    elif tag == "log-to-eventhub":
        logger = element.attrib["logger-id"]
        if "partition-id" in element.attrib:
            raise ValueError("partition-id is not used: the partition key is the subscription")
        key = _value(program, element.attrib.get("partition-key", ""), f"{here}@partition-key")
        message = _value(program, element.text or "", here)
        out.append(f"r.LogToEventHub({json.dumps(logger)}, {key}, {message});")
    elif tag == "forward-request":
        buffer = element.attrib.get("buffer-response", "true")
        out.append(f"r.ForwardRequest({json.dumps(buffer)});")
    elif tag == "return-response":
        out.extend(_return_response(program, element, here))
    elif tag == "include-fragment":
        for child in load_fragment(element.attrib["fragment-id"]):
            translate(program, child, out, f"{here}[{element.attrib['fragment-id']}]")
    else:
        raise ValueError(f"the harness does not model <{tag}>; add it to tests/policy_harness/runner.py")


def _return_response(program: Program, element: ET.Element, here: str) -> list[str]:
    """``<return-response>``: the response its children build goes to the caller; the pipeline stops."""
    status, reason, body = "200", json.dumps(""), "null"
    names: list[str] = []
    values: list[str] = []
    for child in element:
        if child.tag == "set-status":
            status = _value(program, child.attrib["code"], f"{here}/set-status@code")
            reason = _value(program, child.attrib.get("reason", ""), f"{here}/set-status@reason")
        elif child.tag == "set-header":
            value = child.find("value")
            names.append(json.dumps(child.attrib["name"]))
            values.append(
                _value(program, (value.text or "") if value is not None else "", f"{here}/set-header")
            )
        elif child.tag == "set-body":
            body = _value(program, child.text or "", f"{here}/set-body")
        else:
            raise ValueError(f"the harness does not model <{child.tag}> in <return-response>")
    return [
        f"r.ReturnResponse({status}, {reason}, new string[] {{ {', '.join(names)} }}, "
        f"new object[] {{ {', '.join(values)} }}, {body});",
        "return;",
    ]


def program_for(policy: ET.Element, named_values: dict[str, str] | None = None) -> Program:
    """Translate a ``<policies>`` document into a Program (``named_values`` over the shipped ones)."""
    if policy.tag != "policies":
        raise ValueError("expected <policies>")
    program = Program()
    program.named_values.update(named_values or {})
    for section in policy:
        if section.tag not in SECTIONS:
            raise ValueError(f"unknown section <{section.tag}>")
        out: list[str] = []
        for element in section:
            translate(program, element, out, section.tag)
        program.sections[section.tag] = out
    return program


def fragment_host_policy() -> ET.Element:
    """An API policy that uses the fragment as policy/README.md tells users to."""
    include = f'<include-fragment fragment-id="{FRAGMENT_ID}" />'
    return ET.fromstring(
        f"<policies><inbound>{include}<base /></inbound><backend><base /></backend>"
        f"<outbound><base />{include}</outbound><on-error><base />{include}</on-error></policies>"
    )


def mono_available() -> bool:
    """True when mcs, mono and the real Newtonsoft.Json are installed."""
    return bool(shutil.which("mcs") and shutil.which("mono") and NEWTONSOFT.exists())


class CompiledPolicy:
    """A policy compiled with ``mcs -langversion:7`` into an executable that plays scenarios."""

    def __init__(self, policy: ET.Element, workdir: Path, named_values: dict[str, str] | None = None) -> None:
        self.program = program_for(policy, named_values)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        source = workdir / "Policy.cs"
        source.write_text(self.program.source(), encoding="utf-8")
        shutil.copy(NEWTONSOFT, workdir / NEWTONSOFT.name)
        self.exe = workdir / "policy.exe"
        built = subprocess.run(
            [
                "mcs",
                "-langversion:7",
                "-nologo",
                "-warn:0",
                f"-r:{NEWTONSOFT}",
                "-r:System.Core.dll",
                f"-out:{self.exe}",
                str(HARNESS / "ApimContext.cs"),
                str(source),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(f"mcs failed:\n{built.stdout}\n{built.stderr}")

    def run(self, scenarios: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Play the scenarios; return each one's result (events, forwarded body, variables) by name."""
        paths = []
        for index, scenario in enumerate(scenarios):
            path = self.workdir / f"scenario-{index}.json"
            path.write_text(json.dumps(scenario), encoding="utf-8")
            paths.append(str(path))
        env = {**os.environ, "MONO_PATH": str(self.workdir)}
        done = subprocess.run(
            ["mono", str(self.exe), *paths], capture_output=True, text=True, check=False, env=env, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"mono failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return {result["name"]: result for result in json.loads(done.stdout)}


# --- APIM's allowed types ----------------------------------------------------------------------

ALLOWED_TYPES_FILE = HARNESS / "apim_allowed_types.json"
STAND_IN = "ApimStandIn."
_GENERIC_ARGS = re.compile(r"<[^<>]*>")


def monodis_available() -> bool:
    """True when monodis (Debian mono-utils) can list an assembly's member references."""
    return bool(shutil.which("monodis"))


def _normalised_type(name: str) -> str:
    """A documented ``List<T>`` or ``Dictionary<TKey, TValue>`` as IL names it (``List`1``)."""
    match = re.fullmatch(r"(?P<base>[^<]+)<(?P<args>[^>]+)>", name.replace("\\", ""))
    if match is None:
        return name
    return f"{match['base']}`{len(match['args'].split(','))}"


def _member_name(member: str) -> str:
    if member == ".ctor":
        return "(Constructor)"
    for prefix in ("get_", "set_", "add_", "remove_"):
        if member.startswith(prefix):
            return member[len(prefix) :]
    return member


def member_references(
    policy: ET.Element, workdir: Path, named_values: dict[str, str] | None = None
) -> set[str]:
    """Every ``Type::Member`` the policy's expressions reference, read from the compiled IL.

    The expressions alone (no driver, no stand-in) are compiled into a library against the
    stand-in compiled separately, and ``monodis --memberref`` lists what their IL calls: what
    the compiler bound, overloads, properties and inherited members resolved, not a text search.
    """
    program = program_for(policy, named_values)
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [USINGS, "public static class Expressions", "{"]
    for expr in program.expressions:
        body = expr.code[1:]
        if expr.is_block:
            lines += [f"    public static object {expr.method}(Context context)", "    " + body]
        else:
            lines.append(f"    public static object {expr.method}(Context context) {{ return {body}; }}")
    lines.append("}")
    (workdir / "Expressions.cs").write_text("\n".join(lines), encoding="utf-8")
    common = ["mcs", "-langversion:7", "-nologo", "-warn:0", "-target:library", f"-r:{NEWTONSOFT}"]
    for args in (
        [f"-out:{workdir / 'ApimStandIn.dll'}", str(HARNESS / "ApimContext.cs")],
        [
            f"-r:{workdir / 'ApimStandIn.dll'}",
            "-r:System.Core.dll",
            f"-out:{workdir / 'Expressions.dll'}",
            str(workdir / "Expressions.cs"),
        ],
    ):
        built = subprocess.run([*common, *args], capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise RuntimeError(f"mcs failed:\n{built.stdout}\n{built.stderr}")
    listed = subprocess.run(
        ["monodis", "--memberref", str(workdir / "Expressions.dll")],
        capture_output=True,
        text=True,
        check=True,
    )
    found: set[str] = set()
    for line in listed.stdout.splitlines():
        if "Resolved:" not in line:
            continue
        text = line.split("Resolved:", 1)[1].strip().removeprefix("class ").removeprefix("valuetype ")
        text = re.sub(r"^\[[^\]]+\]", "", text)
        while _GENERIC_ARGS.search(text):
            text = _GENERIC_ARGS.sub("", text)
        if text.endswith("..ctor"):
            type_name, member = text[: -len("..ctor")], ".ctor"
        else:
            type_name, _, member = text.rpartition(".")
        found.add(f"{type_name}::{member}")
    return found


def disallowed_references(references: set[str]) -> list[str]:
    """The references APIM's documented list does not allow (types, members, context members)."""
    spec = json.loads(ALLOWED_TYPES_FILE.read_text(encoding="utf-8"))
    allowed = {_normalised_type(name): members for name, members in spec["types"].items()}
    context = spec["context"]
    compiler = {name: members for name, members in spec["compiler"].items() if not name.startswith("$")}
    refused = []
    for reference in sorted(references):
        type_name, member = reference.split("::")
        name = _member_name(member)
        if type_name.startswith(STAND_IN):
            if name not in context.get(type_name[len(STAND_IN) :], []):
                refused.append(f"{reference} (not in APIM's context model)")
            continue
        if name in compiler.get(type_name, []):
            continue
        outer = type_name.split("/")[0]  # a nested type (List`1/Enumerator) belongs to its outer type
        members = allowed.get(type_name, allowed.get(outer) if outer != type_name else None)
        if members is None:
            refused.append(f"{reference} (type not allowed)")
        elif members.startswith("All"):
            excluded = members.partition("except of:")[2]
            if name in {part.strip() for part in excluded.split(",") if part.strip()}:
                refused.append(f"{reference} (member excluded)")
        elif name not in {part.strip() for part in members.split(",")}:
            refused.append(f"{reference} (member not allowed; allowed: {members})")
    return refused
