"""One docstring markup across the tree: reST ``code``, checked by ``scripts/docstring-markup``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docstring-markup"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_no_docstring_uses_markdown_code_spans() -> None:
    done = run()
    assert done.returncode == 0, f"Markdown `code` in docstrings (fix: {SCRIPT} --fix):\n" + (
        done.stdout
    )


def test_fix_rewrites_docstrings_only(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        '"""Reads `a.b` and ``c``; see :class:`D` and `docs <https://x>`_."""\n'
        "\n"
        "import click\n"
        "\n"
        'TEXT = "`kept`: not a docstring"\n'
        "\n"
        "\n"
        "def f() -> None:\n"
        '    """Calls `g()`,\n'
        '    then `h`."""  # `comment` kept\n'
        "\n"
        "\n"
        "@click.command()\n"
        "def cmd() -> None:\n"
        '    """Help people read verbatim: `capstan up`."""\n'
    )
    listed = run(str(module))
    assert listed.returncode == 1
    assert listed.stdout.splitlines() == [
        f"{module}:1: `a.b`",
        f"{module}:9: `g()`",
        f"{module}:10: `h`",
    ]
    assert run("--fix", str(module)).returncode == 0
    text = module.read_text()
    assert text.startswith('"""Reads ``a.b`` and ``c``; see :class:`D` and `docs <https://x>`_."""')
    assert '    """Calls ``g()``,\n    then ``h``."""  # `comment` kept\n' in text
    assert 'TEXT = "`kept`: not a docstring"' in text
    assert '"""Help people read verbatim: `capstan up`."""' in text
    assert run(str(module)).returncode == 0
