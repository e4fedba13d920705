"""The README documents every command and links every guide it promises."""

from __future__ import annotations

import argparse
from pathlib import Path

from chargeback.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "chargeback") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found.extend(_commands(sub, f"{prefix} {name}"))
    return found


def test_every_command_is_in_the_readme():
    """Each `chargeback` command and subcommand appears in the README."""
    commands = _commands(build_parser())
    assert "chargeback ingest" in commands
    missing = [command for command in commands if f"`{command}" not in README]
    assert not missing


def test_the_readme_opens_with_the_two_commands_ci_runs():
    """The first code block installs and runs the demo, then runs scripts/test, which .ci/run calls."""
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "scripts/install && .venv/bin/chargeback demo" in first_block
    assert "scripts/test" in first_block
    assert "scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_linked_guides_exist():
    """Every relative link in the README points at a file in the repo."""
    import re

    links = re.findall(r"\]\(([^)#:]+)\)", README)
    assert links
    assert [link for link in links if not (REPO / link).exists()] == []
