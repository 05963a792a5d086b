"""Two processes on one embedded store file: writes of one reach the other's watch, in order."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from reconciler.store import open_store

_WRITER = textwrap.dedent(
    """
    import sys, time
    from reconciler.store import open_store
    with open_store(f"sqlite://{sys.argv[1]}") as store:
        for i in range(10):
            time.sleep(0.03)
            store.put(f"/xp/{i}", b"v")
            print(f"{i} {time.time()}", flush=True)
    """
)


def test_other_process_writes_reach_a_watch_in_order(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with open_store(f"sqlite://{db}") as store:
        start = store.revision()
        with store.watch("/xp/", prefix=True, from_revision=start) as watch:
            writer = subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, text=True
            )
            seen: dict[str, float] = {}
            order: list[str] = []
            try:
                deadline = time.monotonic() + 30  # a give-up bound
                while len(seen) < 10 and time.monotonic() < deadline:
                    for event in watch.poll(1.0):
                        seen[event.kv.key] = time.time()
                        order.append(event.kv.key)
                out, _ = writer.communicate(timeout=30)
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
    acked = {f"/xp/{line.split()[0]}": float(line.split()[1]) for line in out.splitlines()}
    # Every write the other process acknowledged reached this watch, once each and in the
    # order it made them (its lines are in write order).
    assert order == list(acked)
    # Measured, not asserted (the machine's load decides). Seen-minus-acked can be negative:
    # the watch may fire before the writer prints.
    delays = sorted(seen[key] - acked[key] for key in acked)
    print(
        f"\nother process -> watch: median {delays[len(delays) // 2] * 1000:.0f} ms, "
        f"max {delays[-1] * 1000:.0f} ms"
    )
