"""Running the kernel tools (``nft``, ``iptables-restore``): the proxy's only process boundary.

A :class:`CommandRunner` is passed into the kernel backends, so the renderers stay pure and a
caller can run the tools another way (e.g. inside a network namespace).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def __call__(self, argv: Sequence[str], *, stdin: str | None = None) -> CommandResult: ...


class CommandError(RuntimeError):
    """A kernel tool refused a change; the message carries its stderr."""


def run_command(argv: Sequence[str], *, stdin: str | None = None) -> CommandResult:
    """Run ``argv`` to completion (30 s at most) and capture its output."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError as exc:
        return CommandResult(127, "", str(exc))
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]} timed out after 30 s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def check(result: CommandResult, what: str) -> CommandResult:
    if result.returncode != 0:
        raise CommandError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result
