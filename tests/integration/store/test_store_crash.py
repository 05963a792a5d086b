"""kill -9 at random moments: every acknowledged write survives, revisions never go back."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from reconciler.store import Store, open_store

KILLS = 220
HERE = Path(__file__).parent


class Zygote:
    """Drives crash_writer.py: every line it prints, in order, through ``read_until``."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "crash_writer.py"), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buf = b""
        self._lines: deque[str] = deque()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _read(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not ready:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError("the crash writer zygote died")
        self._buf += chunk
        *complete, self._buf = self._buf.split(b"\n")
        self._lines.extend(line.decode() for line in complete)
        return True

    def read_until(self, *, deadline: float | None = None, prefix: str | None = None) -> list[str]:
        """Lines up to and including the first starting with ``prefix``, or all until
        ``deadline``."""
        out: list[str] = []
        limit = deadline if deadline is not None else time.monotonic() + 20.0
        while True:
            while self._lines:
                line = self._lines.popleft()
                out.append(line)
                if prefix is not None and line.startswith(prefix):
                    return out
            if time.monotonic() >= limit:
                if prefix is not None:
                    raise AssertionError(f"no {prefix!r} line from the writer; got {out[-5:]}")
                return out
            self._read(limit - time.monotonic())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _check_acks(store: Store, acks: list[str]) -> int:
    checked = 0
    for line in acks:
        _, kind, revision, *keys = line.split()
        for key in keys:
            kv = store.get(key)
            assert kv is not None, f"acknowledged {kind} of {key} at {revision} was lost"
            assert kv.mod_revision == int(revision), f"{key}: {kv.mod_revision} != {revision}"
            checked += 1
    return checked


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    rng = random.Random(20261127)
    zygote = Zygote(db)
    acks: list[str] = []
    highest_acked = 0
    rounds_with_acks = 0
    try:
        for round_no in range(KILLS):
            zygote.send(f"go {round_no}")
            lines = zygote.read_until(prefix="pid ")
            pid = int(lines[-1].split()[1])
            if rng.random() < 0.2:
                # Early: while the child forks, opens (recovers) the store, starts writing.
                lines += zygote.read_until(deadline=time.monotonic() + rng.uniform(0.0, 0.03))
            else:
                # Mid-stream: after a random number of acks, plus a random sliver of
                # time, so the kill lands anywhere in a commit. Counted in acks rather
                # than time so a slow disk cannot turn every round into an early kill.
                wanted = rng.randrange(1, 12)
                give_up = time.monotonic() + 5.0
                while sum(line.startswith("ack ") for line in lines) < wanted:
                    if time.monotonic() > give_up:
                        break
                    lines += zygote.read_until(deadline=time.monotonic() + 0.01)
                lines += zygote.read_until(deadline=time.monotonic() + rng.uniform(0.0, 0.004))
            os.kill(pid, signal.SIGKILL)
            zygote.send(f"reap {pid}")
            lines += zygote.read_until(prefix=f"reaped {pid}")
            rounds_with_acks += any(line.startswith("ack ") for line in lines)
            for line in lines:
                if line.startswith("start "):
                    reopened_at = int(line.split()[2])
                    assert reopened_at >= highest_acked, "revision went backwards after kill -9"
                elif line.startswith("ack "):
                    acks.append(line)
                    highest_acked = max(highest_acked, int(line.split()[2]))
    finally:
        zygote.close()
    assert rounds_with_acks > KILLS // 2, f"only {rounds_with_acks} kills hit writes"
    with open_store(f"sqlite://{db}") as store:
        assert store.revision() >= highest_acked
        checked = _check_acks(store, acks)
        revisions = [int(line.split()[2]) for line in acks]
        assert len(set(revisions)) == len(revisions), "two acknowledged writes share a revision"
    assert checked >= len(acks)
