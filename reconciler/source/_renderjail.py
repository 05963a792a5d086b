"""Rendering a commit's templates in a child process with rlimits and a timeout.

Called by the loader (``load_repository``) once per commit, with the names of
every ``*.j2`` manifest; the child (``python -m reconciler.source._renderjail``)
renders them with ``TemplateRenderer`` and answers with their text or their
errors. Templates come from pull requests whose authors are not trusted
(``capstan plan`` runs on them), and a bound the sandbox misses must cost a
child process, never the control plane's memory or time:

- the child's address space is ``RenderLimits.memory`` (RLIMIT_AS: an
  allocation over it is a MemoryError at the template's line), its CPU time
  the rendering budget plus two seconds (RLIMIT_CPU), its files (the answer)
  RLIMIT_FSIZE, and it may start no process (RLIMIT_NPROC);
- a CPU-time timer in the child (ITIMER_PROF) raises inside the template when
  ``RenderLimits.seconds`` of CPU are spent, so the error names the line; if
  it is stuck where no signal is handled (a long computation in C), its CPU
  rlimit stops it two seconds later;
- the parent kills a child that is still there a second past that budget in
  wall-clock time, spent no CPU in the last second and is not waiting for a CPU
  (blocked, stopped): one that is computing is ended by its own CPU rlimit.

Every budget is CPU time, so whether a commit renders depends on the commit,
not on how busy the machine is.
- the child gets an environment without the parent's secrets (Git tokens),
  and answers in JSON, never pickle: the parent does not trust what it says
  beyond its shape.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation
from reconciler.source.render import RenderLimits, RenderTimeout, TemplateRenderer

__all__ = ["render_templates"]

# Seconds past the child's own timer before its CPU rlimit stops it.
_GRACE = 2.0
# The child's progress line before each template: which one a kill interrupted.
_STARTING = "rendering "
_KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL")


@dataclass(frozen=True)
class _Request:
    root: str
    names: list[str]
    values: Mapping[str, Any]
    env: str | None
    limits: RenderLimits


def render_templates(
    root_real: Path,
    names: Sequence[str],
    *,
    values: Mapping[str, Any],
    env: str | None,
    limits: RenderLimits,
) -> tuple[dict[str, str], list[ManifestError]]:
    """The rendered text of each template that rendered, and an error for each that did not."""
    if not names:
        return {}, []
    request = _Request(str(root_real), list(names), values, env, limits)
    environment = {key: os.environ[key] for key in _KEPT_ENVIRONMENT if key in os.environ}
    with tempfile.TemporaryFile() as answer, tempfile.TemporaryFile() as progress:
        child = subprocess.Popen(
            # WARNING: -I (isolated): `-m` would otherwise put the working directory first
            # on sys.path, and a repository holding `jinja2/` or `reconciler/` would run its
            # own code. The working directory is `/`, never the repository, for the same reason.
            [sys.executable, "-I", "-m", "reconciler.source._renderjail"],
            stdin=subprocess.PIPE,
            stdout=answer,
            stderr=progress,
            env=environment,
            cwd="/",
        )
        killed = _wait(child, pickle.dumps(request), limits)
        if killed or child.returncode != 0:
            return {}, [
                _failure(
                    child.returncode, killed=killed, progress=progress, names=names, limits=limits
                )
            ]
        return _answer(answer, names=names, limits=limits)


def _wait(child: subprocess.Popen[bytes], request: bytes, limits: RenderLimits) -> bool:
    """Hand ``child`` its request and wait for it to end; True if it had to be killed."""
    if _ended(child, request, timeout=_cpu_seconds(limits) + 1.0):
        return False
    # Past its budget in wall-clock time. A busy machine slows a computing child down,
    # and its CPU rlimit ends it; only a child that stopped spending CPU is killed here.
    spent = _cpu_used(child.pid)
    while not _ended(child, None, timeout=1.0):
        now = _cpu_used(child.pid)
        computing = now is None or now[1] or spent is None or now[0] > spent[0]
        if not computing and child.poll() is None:
            child.kill()
            child.wait()
            return True
        spent = now
    return False


def _ended(child: subprocess.Popen[bytes], request: bytes | None, *, timeout: float) -> bool:
    """Whether ``child`` ended within ``timeout`` seconds (``request``: its input, once)."""
    try:
        child.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _cpu_used(pid: int) -> tuple[int, bool] | None:
    """Clock ticks of CPU (user and system) process ``pid`` has used, and whether it is
    runnable (running or waiting for a CPU); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12]), fields[0] == "R"


def _failure(
    code: int, *, killed: bool, progress: IO[bytes], names: Sequence[str], limits: RenderLimits
) -> ManifestError:
    progress.seek(0)
    lines = progress.read(1024 * 1024).decode("utf-8", "replace").splitlines()
    started = [line[len(_STARTING) :] for line in lines if line.startswith(_STARTING)]
    name = started[-1] if started and started[-1] in names else names[0]
    if killed:
        reason = f"takes longer than {limits.seconds:g} s (the renderer was stuck and was killed)"
    elif code == -signal.SIGXCPU:
        reason = f"uses more than {_cpu_seconds(limits)} s of CPU (the renderer was stopped)"
    else:
        last = lines[-1] if lines else f"exit code {code}"
        reason = f"failed ({last[:200]})"
    return ManifestError(
        SourceLocation(name), f"template over a rendering limit: rendering the commit {reason}"
    )


def _answer(
    answer: IO[bytes], *, names: Sequence[str], limits: RenderLimits
) -> tuple[dict[str, str], list[ManifestError]]:
    answer.seek(0)
    try:
        data = json.loads(answer.read(_answer_limit(names, limits)))
        rendered = {
            name: text
            for name, text in data["rendered"].items()
            if name in names and isinstance(text, str)
        }
        errors = [
            ManifestError(
                SourceLocation(str(e["file"]), e["line"] if isinstance(e["line"], int) else None),
                str(e["message"]),
            )
            for e in data["errors"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"template renderer gave an unreadable answer ({type(exc).__name__})"
        return {}, [ManifestError(SourceLocation(names[0]), problem)]
    failed = {error.file for error in errors}
    for name in names:
        if name not in rendered and name not in failed:
            errors.append(
                ManifestError(
                    SourceLocation(name),
                    "template not rendered: the commit's rendering limits were spent before it",
                )
            )
    return rendered, errors


def _cpu_seconds(limits: RenderLimits) -> int:
    return math.ceil(limits.seconds + _GRACE)


def _answer_limit(names: Sequence[str], limits: RenderLimits) -> int:
    # JSON escaping at most doubles ASCII text (\u escapes: six bytes a character).
    return 6 * limits.max_output * len(names) + 1024 * 1024


# -- the child


def _confine(limits: RenderLimits, names: Sequence[str]) -> list[bool]:
    """Sets the child's rlimits and timer; the list it returns turns [True] once time is up."""
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
    cpu = _cpu_seconds(limits)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    answer = _answer_limit(names, limits)
    resource.setrlimit(resource.RLIMIT_FSIZE, (answer, answer))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))

    expired = [False]

    def expire(_signum: int, _frame: FrameType | None) -> None:
        expired[0] = True
        raise RenderTimeout

    # CPU time, not wall-clock time: on a busy machine the template gets the same budget.
    signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, limits.seconds)
    return expired


def _main() -> None:
    request: _Request = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent
    expired = _confine(request.limits, request.names)
    renderer = TemplateRenderer(
        Path(request.root), values=request.values, env=request.env, limits=request.limits
    )
    rendered: dict[str, str] = {}
    errors: list[dict[str, Any]] = []
    for name in request.names:
        sys.stderr.write(f"{_STARTING}{name}\n")
        sys.stderr.flush()
        try:
            rendered[name] = renderer.render(name)
        except ManifestErrors as exc:
            errors.extend(error.to_dict() for error in exc.errors)
        if expired[0]:
            break  # the commit's time is spent; the others are reported unrendered
    signal.setitimer(signal.ITIMER_PROF, 0)
    json.dump({"rendered": rendered, "errors": errors}, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    _main()
