"""A plan as text (terminal), Markdown (a pull-request comment) or JSON (programs).

The last step of ``capstan plan``; pure functions of a ``Plan``. Output is deterministic (no
clock, no randomness) so a golden file can pin it. Values only ever come from the plan's
diffs, which mask Secret values already (``reconciler.diff``); a Secret's document is masked
again here in case a caller built one by hand.

What a pull request brings is untrusted: file names, keys and values are printed one line
each (``reconciler.display.one_line``), and in Markdown quoted for where they land (a code
span, HTML, a table cell, a code fence longer than any backtick run inside). Pods that fit
nowhere are shown grouped by owner and reason; ``-o json`` keeps every pod. The Markdown is a
pull-request comment, so it stays under GitHub's 65,536-character limit whatever the change:
each section gets a fair share of the room and says what it leaves out and how to see it.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.diff import FieldChange
from reconciler.display import one_line
from reconciler.plan.model import ObjectDiff, Plan, Rollout

__all__ = ["COMMENT_LIMIT", "render_json", "render_markdown", "render_text"]

_SIGN = {"add": "+", "change": "~", "remove": "-"}
_MAX_STEPS_SHOWN = 12
_MAX_PODS_SHOWN = 8
#: GitHub refuses an issue or pull-request comment longer than this (characters).
COMMENT_LIMIT = 65_536
# Counted in UTF-8 bytes, which are never fewer than characters or UTF-16 units, with room
# left for what a CI bot wraps around the comment.
_MARKDOWN_BUDGET = 60_000
# One value on one line (a long string in a ConfigMap) must not eat a section's share.
_MAX_LINE = 1_000


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _scalar(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def _yaml_lines(value: Any) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return ["|", *(f"  {line}" for line in value.splitlines())]
    if isinstance(value, dict | list) and value:
        text: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=100)
        return text.rstrip("\n").splitlines()
    return [_scalar(value)]


def _text_diff(before: str, after: str) -> list[str]:
    # Multi-line strings (a page in a ConfigMap, a script): a line diff says more than two
    # walls of quoted text.
    lines = ["    |"]
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(f"    {line}")
        else:
            lines.append(f"{line[:1] or ' '}     {line[1:]}")
    return lines


def field_diff_lines(change: FieldChange) -> list[str]:
    """One field's change as YAML lines: ``path:`` then ``-`` old and ``+`` new values."""
    lines = [f"  {change.path}:"]
    before, after = change.before, change.after
    if (
        change.type == "changed"
        and isinstance(before, str)
        and isinstance(after, str)
        and ("\n" in before or "\n" in after)
    ):
        return lines + _text_diff(before, after)
    if change.type != "added":
        lines.extend(f"-   {line}" for line in _yaml_lines(change.before))
    if change.type != "removed":
        lines.extend(f"+   {line}" for line in _yaml_lines(change.after))
    return lines


def diff_lines(diff: ObjectDiff) -> list[str]:
    if diff.action == "change":
        return [line for change in diff.fields for line in field_diff_lines(change)]
    sign = _SIGN[diff.action]
    return [f"{sign} {line}" for line in _yaml_lines(diff.document or {})]


def _where(diff: ObjectDiff) -> str:
    return f" ({diff.source})" if diff.source else ""


def _describe_rollout(r: Rollout) -> str:
    key = f"{r.deployment.namespace}/{r.deployment.name}"
    if r.action == "delete":
        return f"{key}: removed, {r.replicas_before} pods stop"
    what = {
        "create": f"new Deployment, ReplicaSet {r.replica_set}",
        "new-replicaset": f"new ReplicaSet {r.replica_set}",
        "reuse": f"reuses ReplicaSet {r.replica_set} (revision {r.reused_revision}, "
        "same pod-template hash: no new template)",
        "scale": f"scales ReplicaSet {r.replica_set}",
        "none": f"no pod change (ReplicaSet {r.replica_set} keeps running)",
    }[r.action]
    text = f"{key}: {what}; pods {r.replicas_before} → {r.replicas_after}"
    if r.action in ("new-replicaset", "reuse", "create") and r.steps:
        if r.strategy == "Recreate":
            text += "; Recreate (all old pods stop first)"
        else:
            text += f"; RollingUpdate maxSurge {r.max_surge}, maxUnavailable {r.max_unavailable}"
    return text


def _steps(r: Rollout) -> str:
    shown = [f"{s.new}/{s.old}" for s in r.steps]
    if len(shown) > _MAX_STEPS_SHOWN:
        shown = [*shown[: _MAX_STEPS_SHOWN - 2], "…", shown[-1]]
    return " → ".join(shown)


def _pods(names: Sequence[str]) -> str:
    """Pod names, replicas of one ReplicaSet folded: ``shop/web-5f7c9-* (3)``."""
    if not names:
        return "-"
    groups: dict[str, int] = {}
    for name in names:
        prefix = name.rsplit("-", 1)[0] + "-*"
        groups[prefix] = groups.get(prefix, 0) + 1
    if len(groups) < len(names):
        names = [
            prefix if count == 1 else f"{prefix} ({count})" for prefix, count in groups.items()
        ]
    if len(names) > _MAX_PODS_SHOWN:
        return ", ".join(names[:_MAX_PODS_SHOWN]) + f", … (+{len(names) - _MAX_PODS_SHOWN})"
    return ", ".join(names)


def _counts(plan: Plan) -> str:
    return (
        f"{plan.count('add')} to add, {plan.count('change')} to change, "
        f"{plan.count('remove')} to remove, {plan.unchanged} unchanged"
    )


def _verdict(plan: Plan) -> str:
    cap = plan.capacity
    if plan.errors:
        return "not checked (the head does not load)"
    if cap.fits:
        return f"fits ({cap.nodes_total} {'node' if cap.nodes_total == 1 else 'nodes'})"
    problems = []
    if cap.unschedulable:
        problems.append(f"{len(cap.unschedulable)} pod(s) do not fit")
    if cap.conflicts:
        problems.append(f"{len(cap.conflicts)} port conflict(s)")
    return "DOES NOT FIT: " + ", ".join(problems)


# -- text --------------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    out = [f"Plan: {plan.base.label} → {plan.head.label}", f"Observed: {plan.capacity.observed}"]
    out.extend(_error_lines(plan))
    if not plan.errors:
        out += ["", f"Objects: {_counts(plan)}"]
        for diff in plan.changes:
            out.append(f"{_SIGN[diff.action]} {diff.key.kind} {_name(diff)}{_where(diff)}")
            out.extend(f"  {line}" for line in diff_lines(diff))
        if plan.rollouts:
            out += ["", "Rollouts (pods new/old after each step):"]
            for rollout in plan.rollouts:
                out.append(f"  {_describe_rollout(rollout)}")
                if len(rollout.steps) > 1:
                    out.append(f"    steps: {_steps(rollout)}")
        if plan.workloads:
            out += ["", "Workloads (StatefulSets, DaemonSets, Jobs, CronJobs):"]
            for view in plan.workloads:
                out.append(f"  {view.action} {view.key.kind} {view.key.namespace}/{view.key.name}:")
                out.extend(f"    {line}" for line in view.lines)
        if plan.nodes:
            out += ["", "Pods by node:"]
            table = format_table(
                ("NODE", "START", "STOP"),
                [(n.node, _pods(n.start), _pods(n.stop)) for n in plan.nodes],
            )
            out.extend(f"  {line}" for line in table.splitlines())
        out += ["", f"Capacity: {_verdict(plan)}"]
        out.extend(f"  {group.sentence()}" for group in plan.capacity.unfit_groups)
        out.extend(f"  {c}" for c in plan.capacity.conflicts)
        out.extend(f"  note: {n}" for n in plan.capacity.notes)
    out += ["", _closing(plan)]
    return "".join(f"{one_line(line)}\n" for line in out)


def _name(diff: ObjectDiff) -> str:
    return f"{diff.key.namespace}/{diff.key.name}" if diff.key.namespace else diff.key.name


def _error_lines(plan: Plan) -> list[str]:
    lines: list[str] = []
    if plan.errors:
        lines += ["", f"Errors: the head does not load ({len(plan.errors)}):"]
        lines.extend(f"  {e.display()}" for e in plan.errors)
    if plan.base_errors:
        lines += [
            "",
            f"Note: the base does not load ({len(plan.base_errors)} errors); "
            "it is compared as empty.",
        ]
    return lines


def _closing(plan: Plan) -> str:
    if plan.errors:
        return "Result: errors (exit 1)."
    if not plan.capacity.fits:
        return "Result: changes that do not fit the cluster (exit 1)."
    if plan.has_changes:
        return "Result: changes (exit 2)."
    return "Result: no changes (exit 0)."


# -- markdown ----------------------------------------------------------------------------------


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_BACKTICKS = re.compile(r"`+")


def _md(text: str) -> str:
    """Plain text in Markdown prose or a table cell: its metacharacters shown, not obeyed."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def _longest_backticks(texts: Iterable[str]) -> int:
    return max((len(run) for text in texts for run in _BACKTICKS.findall(text)), default=0)


def _code(text: str) -> str:
    """``text`` as a code span, whatever backticks it holds."""
    fence = "`" * (_longest_backticks([text]) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cap(line: str) -> str:
    if len(line) <= _MAX_LINE:
        return line
    return f"{line[:_MAX_LINE]} … ({len(line) - _MAX_LINE:,} more characters)"


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    return [*_md_table_head(headers), *_md_rows(rows)]


def _md_table_head(headers: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]


def _md_rows(rows: Iterable[Sequence[object]]) -> list[str]:
    return ["| " + " | ".join(_md(str(cell)) for cell in row) + " |" for row in rows]


@dataclass
class _Item:
    """One entry of a section (a list entry, a table row, one object's diff). An item with
    ``keep`` > 0 may lose lines from the end of ``lines`` but keeps its first ``keep`` lines (up to
    the opening fence and one line) and its ``tail`` (the closing fence); ``keep`` 0: whole or
    not at all."""

    lines: list[str]
    tail: list[str] = field(default_factory=list)
    keep: int = 0

    @property
    def size(self) -> int:
        return _size(self.lines) + _size(self.tail)

    def cut(self, room: int) -> _Item | None:
        """This item shortened to ``room`` bytes with a line saying what went, or None."""
        keep: list[str] = []
        used = _size(self.tail) + 80  # the "… more lines" line
        for line in self.lines:
            if used + _size([line]) > room:
                break
            keep.append(line)
            used += _size([line])
        if not self.keep or len(keep) < self.keep:
            return None
        cut = len(self.lines) - len(keep)
        return _Item([*keep, f"… {cut:,} more lines not shown"], self.tail)


@dataclass
class _Section:
    """A part of the comment: ``head`` (a heading, a table header) and the ``items`` under it,
    ``noun`` naming them in the note that says how many were left out."""

    noun: str
    head: list[str]
    items: list[_Item]


def _size(lines: Iterable[str]) -> int:
    return sum(len(line.encode()) + 1 for line in lines)


def _shares(needs: Sequence[int], room: int) -> list[int]:
    """Split ``room`` fairly: sections that need less than an equal share get all they need,
    the rest share what is left equally."""
    shares = [0] * len(needs)
    left = room
    order = sorted(range(len(needs)), key=lambda i: needs[i])
    for position, index in enumerate(order):
        shares[index] = min(needs[index], max(left, 0) // (len(needs) - position))
        left -= shares[index]
    return shares


def _fit(sections: Sequence[_Section], room: int) -> list[str]:
    """The sections' lines within ``room`` bytes: each keeps its head and as many items as its
    share holds, then a note saying how many it leaves out and where to see them."""
    if sum(_size(s.head) + sum(i.size for i in s.items) for s in sections) <= room:
        return [
            line
            for s in sections
            for line in (*s.head, *(x for i in s.items for x in (*i.lines, *i.tail)))
        ]
    note_room = 400
    fixed = sum(_size(s.head) + note_room for s in sections)
    shares = _shares([sum(i.size for i in s.items) for s in sections], room - fixed)
    out: list[str] = []
    for section, share in zip(sections, shares, strict=True):
        out.extend(section.head)
        used, shown, partial = 0, 0, False
        for item in section.items:
            if used + item.size <= share:
                chosen: _Item | None = item
            else:
                chosen = item.cut(share - used)
                partial = chosen is not None
            if chosen is None:
                break
            out.extend([*chosen.lines, *chosen.tail])
            used += chosen.size
            shown += 1
            if partial:
                break
        hidden = len(section.items) - shown
        if hidden or partial:
            what = (
                f"{hidden:,} of {len(section.items):,} {section.noun} not shown"
                if hidden
                else "one entry shortened"
            )
            if hidden and partial:
                what += " (and one shortened)"
            out += [
                "",
                f"> ✂️ {what}: this comment stays under GitHub's "
                f"{COMMENT_LIMIT:,}-character limit. `capstan plan -o text` (or "
                "`-o json`) on this change shows everything.",
            ]
    return out


def _object_item(diff: ObjectDiff) -> _Item:
    where = f" — {_html(diff.source)}" if diff.source else ""
    body = [_cap(line) for line in diff_lines(diff)]
    fence = "`" * max(3, _longest_backticks(body) + 1)
    return _Item(
        [
            f"<details><summary><code>{_SIGN[diff.action]} {diff.key.kind} "
            f"{_html(_name(diff))}</code>{where}</summary>",
            "",
            f"{fence}diff",
            *body,
        ],
        tail=[fence, "", "</details>"],
        keep=4,  # the summary, a blank line, the opening fence, one line of the diff
    )


def render_markdown(plan: Plan, *, budget: int = _MARKDOWN_BUDGET) -> str:
    """A pull-request comment: a summary table first, then the sections, the whole under
    ``budget`` bytes of UTF-8 (a change of any size; sections cut say so)."""
    icon = "❌" if plan.exit_code == 1 else ("📝" if plan.has_changes else "✅")
    out = [f"### {icon} Capstan plan: {_code(plan.base.label)} → {_code(plan.head.label)}", ""]
    out += _md_table(
        ("Change", "Count"),
        [
            ("Objects to add", plan.count("add")),
            ("Objects to change", plan.count("change")),
            ("Objects to remove", plan.count("remove")),
            ("Objects unchanged", plan.unchanged),
            ("Pods to start", plan.pods_starting),
            ("Pods to stop", plan.pods_stopping),
            ("Capacity", _verdict(plan)),
            ("Head errors", len(plan.errors)),
        ],
    )
    out += ["", f"Observed: {_md(plan.capacity.observed)}"]
    sections: list[_Section] = []
    if plan.errors:
        sections.append(
            _Section(
                "errors",
                ["", "#### Errors in the head", ""],
                [_Item([f"- {_code(e.display())}"]) for e in plan.errors],
            )
        )
    if plan.base_errors:
        sections.append(
            _Section(
                "notes",
                [],
                [
                    _Item(
                        [
                            "",
                            f"> The base does not load ({len(plan.base_errors)} errors); it is "
                            "compared as empty.",
                        ]
                    )
                ],
            )
        )
    if plan.changes:
        sections.append(
            _Section(
                "objects", ["", "#### Objects", ""], [_object_item(diff) for diff in plan.changes]
            )
        )
    if plan.rollouts:
        sections.append(
            _Section(
                "rollouts",
                [
                    "",
                    "#### Rollouts",
                    "",
                    *_md_table_head(("Deployment", "What happens", "Steps (new/old pods)")),
                ],
                [
                    _Item(
                        _md_rows(
                            [
                                (
                                    f"{r.deployment.namespace}/{r.deployment.name}",
                                    _describe_rollout(r).split(": ", 1)[1],
                                    _steps(r) if len(r.steps) > 1 else "-",
                                )
                            ]
                        )
                    )
                    for r in plan.rollouts
                ],
            )
        )
    if plan.workloads:
        sections.append(
            _Section(
                "workloads",
                [
                    "",
                    "#### Workloads",
                    "",
                    *_md_table_head(("Object", "What happens")),
                ],
                [
                    _Item(
                        _md_rows(
                            [
                                (
                                    f"{w.action} {w.key.kind} {w.key.namespace}/{w.key.name}",
                                    "; ".join(w.lines),
                                )
                            ]
                        )
                    )
                    for w in plan.workloads
                ],
            )
        )
    if plan.nodes:
        sections.append(
            _Section(
                "nodes",
                ["", "#### Pods by node", "", *_md_table_head(("Node", "Start", "Stop"))],
                [_Item(_md_rows([(n.node, _pods(n.start), _pods(n.stop))])) for n in plan.nodes],
            )
        )
    cap = plan.capacity
    if cap.unfit_groups or cap.conflicts or cap.notes:
        sections.append(
            _Section(
                "capacity findings",
                ["", "#### Capacity", ""],
                [
                    *(_Item([f"- ❌ {_md(group.sentence())}"]) for group in cap.unfit_groups),
                    *(_Item([f"- ❌ {_md(c)}"]) for c in cap.conflicts),
                    *(_Item([f"- note: {_md(n)}"]) for n in cap.notes),
                ],
            )
        )
    closing = ["", f"_{_closing(plan)}_"]
    out += _fit(sections, budget - _size(out) - _size(closing))
    out += closing
    return "".join(f"{one_line(line)}\n" for line in out)


# -- json --------------------------------------------------------------------------------------


def render_json(plan: Plan) -> str:
    def key(k: Any) -> dict[str, str]:
        return {"kind": k.kind, "namespace": k.namespace, "name": k.name}

    doc = {
        "base": vars(plan.base),
        "head": vars(plan.head),
        "exitCode": plan.exit_code,
        "summary": {
            "add": plan.count("add"),
            "change": plan.count("change"),
            "remove": plan.count("remove"),
            "unchanged": plan.unchanged,
            "podsStarting": plan.pods_starting,
            "podsStopping": plan.pods_stopping,
        },
        "errors": [e.to_dict() for e in plan.errors],
        "baseErrors": [e.to_dict() for e in plan.base_errors],
        "changes": [
            {
                "action": d.action,
                **key(d.key),
                "source": d.source,
                "fields": [
                    {"path": f.path, "type": f.type, "before": f.before, "after": f.after}
                    for f in d.fields
                ],
                "object": d.document,
            }
            for d in plan.changes
        ],
        "rollouts": [
            {
                **key(r.deployment),
                "action": r.action,
                "replicaSet": r.replica_set,
                "templateHash": r.template_hash,
                "reusedRevision": r.reused_revision,
                "replicasBefore": r.replicas_before,
                "replicasAfter": r.replicas_after,
                "strategy": r.strategy,
                "maxSurge": r.max_surge,
                "maxUnavailable": r.max_unavailable,
                "steps": [{"new": s.new, "old": s.old} for s in r.steps],
                "scaledDown": list(r.scaled_down),
            }
            for r in plan.rollouts
        ],
        "workloads": [
            {
                **key(w.key),
                "action": w.action,
                "lines": list(w.lines),
                "start": list(w.starts),
                "stop": [s.key for s in w.stops],
            }
            for w in plan.workloads
        ],
        "nodes": [
            {"node": n.node, "start": list(n.start), "stop": list(n.stop)} for n in plan.nodes
        ],
        "capacity": {
            "observed": plan.capacity.observed,
            "nodes": plan.capacity.nodes_total,
            "fits": plan.capacity.fits,
            "unschedulable": [
                {"pod": u.pod, "message": u.message, "owner": key(u.owner) if u.owner else None}
                for u in plan.capacity.unschedulable
            ],
            "unschedulableGroups": [
                {
                    "owner": key(g.owner) if g.owner else None,
                    "message": g.message,
                    "count": g.count,
                    "of": g.total,
                    "summary": g.sentence(),
                }
                for g in plan.capacity.unfit_groups
            ],
            "conflicts": list(plan.capacity.conflicts),
            "notes": list(plan.capacity.notes),
        },
        "loadStrategy": plan.load_strategy,
    }
    return json.dumps(doc, indent=2, default=str) + "\n"
