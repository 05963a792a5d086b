"""A plan as text (terminal), Markdown (a pull-request comment) or JSON (programs).

The last step of `capstan plan`; pure functions of a `Plan`. Output is deterministic (no
clock, no randomness) so a golden file can pin it. Values only ever come from the plan's
diffs, which mask Secret values already (`reconciler.diff`); a Secret's document is masked
again here in case a caller built one by hand.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from reconciler.diff import FieldChange
from reconciler.plan.model import ObjectDiff, Plan, Rollout

__all__ = ["render_json", "render_markdown", "render_text"]

_SIGN = {"add": "+", "change": "~", "remove": "-"}
_MAX_STEPS_SHOWN = 12
_MAX_PODS_SHOWN = 8


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


def _scalar(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def _yaml_lines(value: Any) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return ["|", *(f"  {line}" for line in value.splitlines())]
    if isinstance(value, dict | list) and value:
        text: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=True,
                                   width=100)
        return text.rstrip("\n").splitlines()
    return [_scalar(value)]


def _text_diff(before: str, after: str) -> list[str]:
    # Multi-line strings (a page in a ConfigMap, a script): a line diff says more than two
    # walls of quoted text.
    lines = ["    |"]
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="",
                                     n=1):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(f"    {line}")
        else:
            lines.append(f"{line[:1] or ' '}     {line[1:]}")
    return lines


def field_diff_lines(change: FieldChange) -> list[str]:
    """One field's change as YAML lines: `path:` then `-` old and `+` new values."""
    lines = [f"  {change.path}:"]
    before, after = change.before, change.after
    if (change.type == "changed" and isinstance(before, str) and isinstance(after, str)
            and ("\n" in before or "\n" in after)):
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
    """Pod names, replicas of one ReplicaSet folded: `shop/web-5f7c9-* (3)`."""
    if not names:
        return "-"
    groups: dict[str, int] = {}
    for name in names:
        prefix = name.rsplit("-", 1)[0] + "-*"
        groups[prefix] = groups.get(prefix, 0) + 1
    if len(groups) < len(names):
        names = [prefix if count == 1 else f"{prefix} ({count})"
                 for prefix, count in groups.items()]
    if len(names) > _MAX_PODS_SHOWN:
        return ", ".join(names[:_MAX_PODS_SHOWN]) + f", … (+{len(names) - _MAX_PODS_SHOWN})"
    return ", ".join(names)


def _counts(plan: Plan) -> str:
    return (f"{plan.count('add')} to add, {plan.count('change')} to change, "
            f"{plan.count('remove')} to remove, {plan.unchanged} unchanged")


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
    out = [f"Plan: {plan.base.label} → {plan.head.label}",
           f"Observed: {plan.capacity.observed}"]
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
        if plan.nodes:
            out += ["", "Pods by node:"]
            table = format_table(("NODE", "START", "STOP"),
                                 [(n.node, _pods(n.start), _pods(n.stop)) for n in plan.nodes])
            out.extend(f"  {line}" for line in table.splitlines())
        out += ["", f"Capacity: {_verdict(plan)}"]
        out.extend(f"  {u.pod}: {u.message}" for u in plan.capacity.unschedulable)
        out.extend(f"  {c}" for c in plan.capacity.conflicts)
        out.extend(f"  note: {n}" for n in plan.capacity.notes)
    out += ["", _closing(plan)]
    return "\n".join(out) + "\n"


def _name(diff: ObjectDiff) -> str:
    return f"{diff.key.namespace}/{diff.key.name}" if diff.key.namespace else diff.key.name


def _error_lines(plan: Plan) -> list[str]:
    lines: list[str] = []
    if plan.errors:
        lines += ["", f"Errors: the head does not load ({len(plan.errors)}):"]
        lines.extend(f"  {e.display()}" for e in plan.errors)
    if plan.base_errors:
        lines += ["", f"Note: the base does not load ({len(plan.base_errors)} errors); "
                      "it is compared as empty."]
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


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(_md(str(cell)) for cell in row) + " |" for row in rows)
    return lines


def render_markdown(plan: Plan) -> str:
    icon = "❌" if plan.exit_code == 1 else ("📝" if plan.has_changes else "✅")
    out = [f"### {icon} Capstan plan: `{plan.base.label}` → `{plan.head.label}`", ""]
    out += _md_table(("Change", "Count"), [
        ("Objects to add", plan.count("add")),
        ("Objects to change", plan.count("change")),
        ("Objects to remove", plan.count("remove")),
        ("Objects unchanged", plan.unchanged),
        ("Pods to start", plan.pods_starting),
        ("Pods to stop", plan.pods_stopping),
        ("Capacity", _verdict(plan)),
        ("Head errors", len(plan.errors)),
    ])
    out += ["", f"Observed: {_md(plan.capacity.observed)}"]
    if plan.errors:
        out += ["", "#### Errors in the head", ""]
        out.extend(f"- `{e.display()}`" for e in plan.errors)
    if plan.base_errors:
        out += ["", f"> The base does not load ({len(plan.base_errors)} errors); it is "
                    "compared as empty."]
    if plan.changes:
        out += ["", "#### Objects", ""]
        for diff in plan.changes:
            where = f" — {_md(diff.source)}" if diff.source else ""
            out.append(f"<details><summary><code>{_SIGN[diff.action]} {diff.key.kind} "
                       f"{_md(_name(diff))}</code>{where}</summary>")
            out += ["", "```diff", *diff_lines(diff), "```", "", "</details>"]
    if plan.rollouts:
        out += ["", "#### Rollouts", ""]
        out += _md_table(("Deployment", "What happens", "Steps (new/old pods)"), [
            (f"{r.deployment.namespace}/{r.deployment.name}",
             _describe_rollout(r).split(": ", 1)[1], _steps(r) if len(r.steps) > 1 else "-")
            for r in plan.rollouts
        ])
    if plan.nodes:
        out += ["", "#### Pods by node", ""]
        out += _md_table(("Node", "Start", "Stop"),
                         [(n.node, _pods(n.start), _pods(n.stop)) for n in plan.nodes])
    cap = plan.capacity
    if cap.unschedulable or cap.conflicts or cap.notes:
        out += ["", "#### Capacity", ""]
        out.extend(f"- ❌ `{u.pod}`: {_md(u.message)}" for u in cap.unschedulable)
        out.extend(f"- ❌ {_md(c)}" for c in cap.conflicts)
        out.extend(f"- note: {_md(n)}" for n in cap.notes)
    out += ["", f"_{_closing(plan)}_"]
    return "\n".join(out) + "\n"


# -- json --------------------------------------------------------------------------------------


def render_json(plan: Plan) -> str:
    def key(k: Any) -> dict[str, str]:
        return {"kind": k.kind, "namespace": k.namespace, "name": k.name}

    doc = {
        "base": vars(plan.base), "head": vars(plan.head),
        "exitCode": plan.exit_code,
        "summary": {"add": plan.count("add"), "change": plan.count("change"),
                    "remove": plan.count("remove"), "unchanged": plan.unchanged,
                    "podsStarting": plan.pods_starting, "podsStopping": plan.pods_stopping},
        "errors": [e.to_dict() for e in plan.errors],
        "baseErrors": [e.to_dict() for e in plan.base_errors],
        "changes": [
            {"action": d.action, **key(d.key), "source": d.source,
             "fields": [{"path": f.path, "type": f.type, "before": f.before, "after": f.after}
                        for f in d.fields],
             "object": d.document}
            for d in plan.changes
        ],
        "rollouts": [
            {**key(r.deployment), "action": r.action, "replicaSet": r.replica_set,
             "templateHash": r.template_hash, "reusedRevision": r.reused_revision,
             "replicasBefore": r.replicas_before, "replicasAfter": r.replicas_after,
             "strategy": r.strategy, "maxSurge": r.max_surge,
             "maxUnavailable": r.max_unavailable,
             "steps": [{"new": s.new, "old": s.old} for s in r.steps],
             "scaledDown": list(r.scaled_down)}
            for r in plan.rollouts
        ],
        "nodes": [{"node": n.node, "start": list(n.start), "stop": list(n.stop)}
                  for n in plan.nodes],
        "capacity": {"observed": plan.capacity.observed, "nodes": plan.capacity.nodes_total,
                     "fits": plan.capacity.fits,
                     "unschedulable": [{"pod": u.pod, "message": u.message}
                                       for u in plan.capacity.unschedulable],
                     "conflicts": list(plan.capacity.conflicts),
                     "notes": list(plan.capacity.notes)},
        "loadStrategy": plan.load_strategy,
    }
    return json.dumps(doc, indent=2, default=str) + "\n"
