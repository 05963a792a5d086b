"""Crash-test helper: a single-threaded zygote that forks store writers on demand.

Run as ``python crash_writer.py DB``. For each ``go`` line on stdin it forks a
child that opens the store, prints ``start <revision>``, then writes until it is
killed: from 4 threads, alternating puts and two-key txns, printing one
``ack ...`` line per write after the store returned (i.e. after the fsync). The
zygote prints ``pid <n>`` first, and on ``reap <n>`` waits for that child. Forking
from this small process instead of starting Python each round keeps 200+ kill
rounds within seconds; the zygote itself never opens the store, so the fork
copies no SQLite handle or lock.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from reconciler.store import Op, open_store


def _emit(line: str) -> None:
    # One write(2) per line, under PIPE_BUF: lines from several threads never interleave.
    os.write(1, (line + "\n").encode())


def child(db: Path, round_no: int) -> None:
    store = open_store(f"sqlite://{db}")
    _emit(f"start {round_no} {store.revision()}")

    def writer(thread_no: int) -> None:
        n = 0
        while True:
            key = f"/crash/{round_no}/{thread_no}/{n}"
            if n % 2:
                result = store.txn([], [Op.put(key + "/a", b"A"), Op.put(key + "/b", b"B")])
                _emit(f"ack txn {result.revision} {key}/a {key}/b")
            else:
                revision = store.put(key, key.encode()).revision
                _emit(f"ack put {revision} {key}")
            n += 1

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    threading.Event().wait()


def main() -> None:
    db = Path(sys.argv[1])
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "go":
            pid = os.fork()
            if pid == 0:
                try:
                    child(db, int(arg))
                finally:
                    os._exit(1)
            _emit(f"pid {pid}")
        elif command == "reap":
            os.waitpid(int(arg), 0)
            _emit(f"reaped {arg}")


if __name__ == "__main__":
    main()
