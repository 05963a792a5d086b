"""Write the JSON Schema of every supported kind, for editors and for CI of users' repositories.

``python -m schemas.export`` regenerates ``schemas/jsonschema/<group>-<version>-<kind>.json``
(the core group is named ``core``); ``--check`` changes nothing and exits 1 when a file is
missing, stale or left over from a kind that no longer exists. A unit test runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas.registry import SUPPORTED_KINDS, model_for

__all__ = [
    "DEFAULT_DIR",
    "check",
    "main",
    "render_all",
    "schema_file_name",
    "schema_text",
    "write",
]

DEFAULT_DIR = Path(__file__).parent / "jsonschema"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file_name(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``Deployment`` → ``apps-v1-deployment.json``; ``v1`` → ``core-v1-...``."""
    group, _, version = api_version.rpartition("/")
    return f"{group or 'core'}-{version}-{kind.lower()}.json"


def schema_text(api_version: str, kind: str) -> str:
    """The JSON Schema of one supported kind, as written to its file (and ``capstan schema``)."""
    schema = model_for(api_version, kind).model_json_schema(by_alias=True, mode="validation")
    document = {"$schema": _DIALECT, **schema}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name → file text, for every supported kind."""
    return {
        schema_file_name(api_version, kind): schema_text(api_version, kind)
        for api_version, kind in SUPPORTED_KINDS
    }


def check(directory: Path) -> list[str]:
    """The names of files in ``directory`` that are missing, stale or superfluous."""
    expected = render_all()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: stale")
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in expected:
                problems.append(f"{path.name}: no longer a supported kind")
    return problems


def write(directory: Path) -> list[str]:
    """Regenerate ``directory``; return the names of the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = render_all()
    changed = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected:
            path.unlink()
            changed.append(path.name)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description="Write the JSON Schema of every kind."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python -m schemas.export", file=sys.stderr)
            return 1
        print(f"{len(SUPPORTED_KINDS)} schema files are current")
        return 0
    changed = write(args.dir)
    print(f"wrote {len(changed)} of {len(SUPPORTED_KINDS)} schema files to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
