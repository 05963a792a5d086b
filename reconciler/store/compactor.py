"""The store compactor: the leader's periodic ``Store.compact``, as kube-apiserver's.

Every write leaves a revision in the store's history (the embedded store's log rows and
its in-memory ``KeyIndex``, etcd's MVCC history) until something compacts it; nothing
else in the control plane does. ``CapstanApp._start_leading`` starts one ``Compactor`` on
the leader's ``FencedStore`` and ``_stop_leading`` stops it, so only the leader compacts.

Each ``tick`` (every ``interval_s``; ``capstan up --store-compaction-interval``) follows
kube-apiserver's ``compactor`` (k8s.io/apiserver/pkg/storage/etcd3/compact.go): a
compare-and-swap on ``COMPACT_KEY``, whose version is a logical clock shared by every
replica; the tick that wins it compacts at the revision the previous tick recorded and
records the current one. So at least one interval of history stays for watches resuming
from a recent revision (the API's watch cache, informers); a watcher further behind gets
``Compacted`` (HTTP 410 Gone, ``Expired`` in the Api) and relists. The swap goes through
the fenced store: a deposed leader's tick fails with ``Fenced`` and compacts nothing. A
tick that loses the swap (another compactor ticked since) adopts the winner's clock and
compacts nothing, so two compactors never compact twice per interval.
"""

from __future__ import annotations

import logging
import threading

from reconciler.store._base import Store
from reconciler.store._errors import Compacted, StoreError
from reconciler.store._types import Compare, Op, RangeResult, Revision

__all__ = ["COMPACT_KEY", "DEFAULT_COMPACTION_INTERVAL_S", "Compactor"]

_log = logging.getLogger(__name__)

#: The compaction clock: its version counts the ticks that won the swap; its value is the
#: revision that tick recorded (kube-apiserver's ``compact_rev_key``).
COMPACT_KEY = "/capstan/compact_rev_key"
#: kube-apiserver's ``--etcd-compaction-interval`` default; 0 turns compaction off.
DEFAULT_COMPACTION_INTERVAL_S = 300.0


class Compactor:
    """Compacts ``store`` every ``interval_s`` on a thread of its own (``start``/``stop``),
    or once per ``tick`` call."""

    def __init__(self, store: Store, *, interval_s: float = DEFAULT_COMPACTION_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"compaction interval must be positive, not {interval_s}")
        self._store = store
        self.interval_s = interval_s
        #: The clock this compactor last saw (``COMPACT_KEY``'s version).
        self.clock = 0
        #: The revision to compact at on the next winning tick (0: none recorded yet).
        self.pending: Revision = Revision(0)
        #: The revision of this compactor's last compaction (0: none yet).
        self.compacted: Revision = Revision(0)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Revision | None:
        """One round: swap the clock and compact at the previous round's revision; return
        the revision compacted at, or None (the first round, a lost swap, or a store that is
        already compacted past it). Raises the store's error (``Fenced`` when this term is over)."""
        result = self._store.txn(
            [Compare.version(COMPACT_KEY, "==", self.clock)],
            [Op.put(COMPACT_KEY, str(self.pending).encode())],
            [Op.range(COMPACT_KEY)],
        )
        previous, self.pending = self.pending, result.revision
        if not result.succeeded:
            # Another compactor ticked since: follow its clock; it compacted this round.
            answer = result.responses[0]
            assert isinstance(answer, RangeResult)
            self.clock = answer.kvs[0].version if answer.kvs else 0
            return None
        self.clock += 1
        if previous == 0:
            return None  # nothing recorded yet: the first round only records
        try:
            self._store.compact(previous)
        except Compacted:
            return None  # compacted further already (an earlier leader, `capstan` by hand)
        self.compacted = previous
        _log.debug("compacted the store at revision %d", previous)
        return previous

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-compactor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.tick()
            except StoreError as exc:
                # The next round retries; a Fenced store has already deposed this leader.
                _log.warning("compacting the store failed: %s", exc)
            except Exception:
                _log.exception("compacting the store failed")
