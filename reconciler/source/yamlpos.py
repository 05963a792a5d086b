"""Safe YAML loading that remembers where every value came from.

Called by the loader for each manifest file (after Jinja2 rendering for
templates) and for the values files. Each document keeps its composed node
tree next to the constructed data, so a field path from a validation error —
`("spec", "template", "spec", "containers", 0, "image")` — can be turned back
into `file:line:column`.

Only plain, JSON-shaped YAML is accepted: strings, numbers, booleans, null,
sequences, mappings, anchors/aliases and merge keys. Any other tag
(`!!python/object/apply:...`, `!!binary`, `!!set`, local `!tags`) is an error
at the tag's position and is never constructed. The constructor is PyYAML's
safe one (the libyaml-accelerated `CSafeLoader` when available).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.source.errors import ManifestError, SourceLocation

__all__ = ["YamlDocument", "load_documents"]

# Generous for manifests (a 1 MiB ConfigMap is ~100k nodes), small enough that
# a "billion laughs" document of nested aliases is refused before anything
# walks its expansion (pydantic would, node by node).
MAX_EXPANDED_NODES = 1_000_000
# Real manifests nest ~15 levels; the limit keeps every recursive walk
# (PyYAML's constructor, pydantic) far from Python's recursion limit.
MAX_DEPTH = 100

_STD = "tag:yaml.org,2002:"
_MERGE = _STD + "merge"
_ALLOWED_TAGS = frozenset(
    _STD + name for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
) | {_MERGE}

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    # libyaml's parser (in the PyYAML wheels) composes several times faster; the
    # constructor stays PyYAML's safe one either way.
    _BaseLoader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _PositionLoader(_BaseLoader):
    """PyYAML's safe loader, with timestamps kept as the strings they were written as.

    Kubernetes reads YAML as JSON, where `2024-01-01` in an annotation is a
    string; PyYAML would make it a `datetime.date` that no string field accepts.
    """


def _timestamp_as_string(loader: _PositionLoader, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a !!timestamp must be a scalar", node.start_mark
        )
    return str(loader.construct_scalar(node))


_PositionLoader.add_constructor(_STD + "timestamp", _timestamp_as_string)

# Scalars whose explicit tag does not fit the text (`!!int abc`) make PyYAML's
# constructors raise ValueError/KeyError without a position; they are tried
# one by one during the pre-check so the error can name the scalar.
_SCALAR_CONSTRUCTORS: dict[str, Callable[[yaml.SafeLoader, ScalarNode], object]] = {
    _STD + "int": yaml.SafeLoader.construct_yaml_int,
    _STD + "float": yaml.SafeLoader.construct_yaml_float,
    _STD + "bool": yaml.SafeLoader.construct_yaml_bool,
}


@dataclass(frozen=True, eq=False)
class YamlDocument:
    """One YAML document of a file: the data and the node tree it was built from."""

    file: str
    rendered: bool
    index: int
    data: Any
    node: Node = field(repr=False)

    def location(self, path: Sequence[str | int] = ()) -> SourceLocation:
        return self.locate(path)[0]

    def locate(self, path: Sequence[str | int]) -> tuple[SourceLocation, int]:
        """The position of the deepest node on `path`, and how many parts of the path exist.

        A mapping entry is located at its key (where a reader looks for a
        field), a sequence item at the item. For a field that does not exist
        the answer is its parent: the mapping that lacks it.
        """
        node: Node = self.node
        mark_node: Node = node
        found = 0
        for part in path:
            child: Node | None = None
            child_mark: Node | None = None
            if isinstance(node, MappingNode):
                wanted = str(part)
                # After construction, merge keys are flattened into node.value
                # ahead of the mapping's own pairs; the last match is the one
                # that won, as in the constructed dict.
                for key, value in node.value:
                    if isinstance(key, ScalarNode) and key.value == wanted:
                        child, child_mark = value, key
            elif (
                isinstance(node, SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = child_mark = node.value[part]
            if child is None or child_mark is None:
                break
            node, mark_node = child, child_mark
            found += 1
        return self._mark(mark_node), found

    def _mark(self, node: Node) -> SourceLocation:
        mark = node.start_mark
        return SourceLocation(self.file, mark.line + 1, mark.column + 1, self.rendered)


def load_documents(
    text: str, *, file: str, rendered: bool = False
) -> tuple[list[YamlDocument], list[ManifestError]]:
    """Every document of `text`, and every error found in it.

    Documents before a syntax error are returned; the parser cannot resume
    after one, so nothing after it is. Empty documents are dropped.
    """
    documents: list[YamlDocument] = []
    errors: list[ManifestError] = []
    loader = _PositionLoader(text)
    index = 0

    def at(mark: Any) -> SourceLocation:
        if mark is None:
            return SourceLocation(file, None, None, rendered)
        return SourceLocation(file, mark.line + 1, mark.column + 1, rendered)

    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there was one
                break
            problems = _precheck(node, at=at, loader=loader)
            if problems:
                errors.extend(problems)
            else:
                data = _construct(loader, node, at=at, errors=errors)
                if data is not None:
                    documents.append(YamlDocument(file, rendered, index, data, node))
            index += 1
    except yaml.MarkedYAMLError as exc:
        errors.append(ManifestError(at(exc.problem_mark or exc.context_mark), _describe(exc)))
    except yaml.YAMLError as exc:
        # Reader errors (control characters, bad encoding) carry a character
        # offset instead of a mark, and a multi-line message naming "<unicode string>".
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        errors.append(ManifestError(_reader_location(exc, text, file, rendered), message))
    except RecursionError:
        errors.append(
            ManifestError(SourceLocation(file, None, None, rendered), "YAML nested too deeply")
        )
    finally:
        loader.dispose()
    return documents, errors


def _construct(
    loader: _PositionLoader,
    node: Node,
    *,
    at: Callable[[Any], SourceLocation],
    errors: list[ManifestError],
) -> Any:
    try:
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        errors.append(ManifestError(at(exc.problem_mark or exc.context_mark), _describe(exc)))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        # The pre-check catches the cases we know of; this keeps any other
        # constructor failure on hostile input a validation error.
        errors.append(ManifestError(at(node.start_mark), f"cannot read YAML document: {exc!r}"))
    return None


def _precheck(
    root: Node, *, at: Callable[[Any], SourceLocation], loader: _PositionLoader
) -> list[ManifestError]:
    """Refuse what the constructor must never see: foreign tags, cycles, alias bombs.

    Iterative on purpose: the documents are hostile until proven otherwise.
    Also reports duplicate keys, which PyYAML would silently collapse (the
    Kubernetes API server rejects them).

    Each distinct node is visited once; a node met again is an alias
    reference, remembered with its depth, and only those are expanded (by
    `_check_aliases`) to measure what the document becomes.
    """
    errors: list[ManifestError] = []
    seen: set[int] = set()
    references: list[tuple[Node, int]] = []
    distinct = 0
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            references.append((node, depth))
            continue
        seen.add(id(node))
        distinct += 1
        if depth > MAX_DEPTH:
            return [ManifestError(at(node.start_mark), f"nested deeper than {MAX_DEPTH} levels")]
        problem = _check_node(node, at=at, loader=loader)
        if problem:
            errors.extend(problem)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
    if references:
        errors.extend(_check_aliases(references, distinct=distinct, at=at))
    return errors


def _check_aliases(
    references: list[tuple[Node, int]],
    *,
    distinct: int,
    at: Callable[[Any], SourceLocation],
) -> list[ManifestError]:
    """Cycles, and the size and depth of the document once every alias is expanded.

    The expanded document is the tree of first visits plus, at each further
    reference, a full copy of the referenced node: its size is `distinct` plus
    the expanded size of every reference's target.
    """
    expanded: dict[int, tuple[int, int]] = {}  # id -> (nodes, height) once expanded
    total = distinct
    for target, depth in references:
        measured = _expand(target, expanded=expanded)
        if measured is None:
            return [ManifestError(at(target.start_mark), "recursive YAML alias")]
        size, height = measured
        total += size
        if total > MAX_EXPANDED_NODES:
            return [
                ManifestError(
                    at(target.start_mark),
                    f"document expands to more than {MAX_EXPANDED_NODES} nodes "
                    "(too much aliasing)",
                )
            ]
        if depth + height > MAX_DEPTH:
            return [
                ManifestError(
                    at(target.start_mark),
                    f"nested deeper than {MAX_DEPTH} levels (via aliases)",
                )
            ]
    return []


def _expand(node: Node, *, expanded: dict[int, tuple[int, int]]) -> tuple[int, int] | None:
    """(expanded nodes, height) of `node`, memoized; None if it contains itself."""
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, finished = stack.pop()
        cid = id(current)
        if finished:
            on_path.discard(cid)
            children = _children(current)
            size = 1 + sum(expanded[id(child)][0] for child in children)
            height = 1 + max((expanded[id(child)][1] for child in children), default=0)
            # Capped so a bomb's numbers stay small while the caller sums them.
            expanded[cid] = (min(size, MAX_EXPANDED_NODES + 1), height)
            continue
        if cid in expanded:
            continue
        if cid in on_path:
            return None
        on_path.add(cid)
        stack.append((current, True))
        stack.extend((child, False) for child in _children(current))
    return expanded[id(node)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_node(
    node: Node, *, at: Callable[[Any], SourceLocation], loader: _PositionLoader
) -> list[ManifestError] | None:
    if node.tag not in _ALLOWED_TAGS:
        tag = node.tag.replace(_STD, "!!", 1) if node.tag.startswith(_STD) else node.tag
        return [
            ManifestError(
                at(node.start_mark),
                f"YAML tag {tag!r} is not allowed (only plain YAML: strings, numbers, "
                "booleans, null, lists, mappings, anchors)",
            )
        ]
    if isinstance(node, ScalarNode):
        construct = _SCALAR_CONSTRUCTORS.get(node.tag)
        if construct is None:
            return None
        try:
            construct(loader, node)
        except (ValueError, KeyError, yaml.YAMLError):
            tag = node.tag.replace(_STD, "!!", 1)
            return [ManifestError(at(node.start_mark), f"{node.value!r} is not a valid {tag}")]
        return None
    if isinstance(node, MappingNode):
        errors: list[ManifestError] = []
        seen: dict[tuple[str, str], Node] = {}
        for key, _value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                errors.append(
                    ManifestError(
                        at(key.start_mark),
                        f"duplicate key {key.value!r} (first at line {first.start_mark.line + 1})",
                    )
                )
        return errors
    return None


def _describe(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "invalid YAML"
    constructing = isinstance(exc, yaml.constructor.ConstructorError)
    kind = "YAML error" if constructing else "YAML syntax error"
    if exc.context:
        where = ""
        if exc.context_mark is not None and exc.context_mark is not exc.problem_mark:
            where = f" at line {exc.context_mark.line + 1}"
        return f"{kind}: {problem} ({exc.context}{where})"
    return f"{kind}: {problem}"


def _reader_location(exc: yaml.YAMLError, text: str, file: str, rendered: bool) -> SourceLocation:
    position = getattr(exc, "position", None)
    if not isinstance(position, int) or not 0 <= position <= len(text):
        return SourceLocation(file, None, None, rendered)
    before = text[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    return SourceLocation(file, line, column, rendered)
