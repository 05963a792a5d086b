"""Safe YAML loading that remembers where every value came from.

Called by the loader for each manifest file (after Jinja2 rendering for
templates) and for the values files. Each document keeps its composed node
tree next to the constructed data, so a field path from a validation error —
``("spec", "template", "spec", "containers", 0, "image")`` — can be turned back
into ``file:line:column``.

Only plain, JSON-shaped YAML is accepted: strings, numbers, booleans, null,
sequences, mappings, anchors/aliases and merge keys. Any other tag
(``!!python/object/apply:...``, ``!!binary``, ``!!set``, local ``!tags``) is an error
at the tag's position and is never constructed. The constructor is PyYAML's
safe one (the libyaml-accelerated ``CSafeLoader`` when available).

Size is bounded before anything is built: each file's event stream is
measured first (``_measure``, constant memory) and a file is composed only when
every document in it stays within the limits once its aliases are expanded —
one object at most ``MAX_OBJECT_BYTES`` of scalar text and ``MAX_OBJECT_NODES``
nodes, ``MAX_DEPTH`` levels deep — and the commit's ``LoadBudget`` (shared by
every file the loader reads for one commit) still covers it. An alias to a 5
MiB string is counted as 5 MiB each time it is used, so an alias bomb is
refused after reading its events, never expanded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.source.errors import ManifestError, SourceLocation

__all__ = ["LoadBudget", "YamlDocument", "load_documents"]

_MiB = 1024 * 1024
# One object, aliases expanded: etcd's request limit, which is what bounds a
# Kubernetes object (the API server's 3 MiB request holds one object plus
# its envelope). Scalar text of keys and values is what is counted.
MAX_OBJECT_BYTES = 3 * _MiB // 2
# Composed YAML nodes cost ~400 bytes each and ~7 us to load; a real object
# has tens to a few thousand.
MAX_OBJECT_NODES = 100_000
# Real manifests nest ~15 levels; the limit keeps every recursive walk
# (PyYAML's constructor, pydantic) far from Python's recursion limit.
MAX_DEPTH = 100
# One commit, every manifest and values file together, aliases expanded.
# 1.5x a 1,000-app repository (5,000 objects, ~4 MiB, ~200k nodes), and
# small enough that loading it stays within seconds and a few hundred MB.
MAX_COMMIT_BYTES = 16 * _MiB
MAX_COMMIT_NODES = 300_000
MAX_COMMIT_DOCUMENTS = 10_000


@dataclass
class LoadBudget:
    """What one commit may still load; ``load_documents`` charges every document it accepts.

    The loader makes one per commit and passes it to every file it reads, so
    the limits hold for the commit as a whole and not only file by file.
    ``exhausted`` is set once a file was refused for the commit's limits:
    reading further files is pointless, the commit cannot be valid.
    """

    bytes_left: int = MAX_COMMIT_BYTES
    nodes_left: int = MAX_COMMIT_NODES
    documents_left: int = MAX_COMMIT_DOCUMENTS
    exhausted: bool = False


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

    Kubernetes reads YAML as JSON, where ``2024-01-01`` in an annotation is a
    string; PyYAML would make it a ``datetime.date`` that no string field accepts.
    """


def _timestamp_as_string(loader: _PositionLoader, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a !!timestamp must be a scalar", node.start_mark
        )
    return str(loader.construct_scalar(node))


_PositionLoader.add_constructor(_STD + "timestamp", _timestamp_as_string)

# YAML 1.1 reads a plain `=` as the `!!value` type, which Go's YAML (kubectl's) reads as the
# string "=": kube-prometheus' CRDs list `enum: ['!=', =, =~]`. The loader reads it as Go does.
_PositionLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _STD + "value"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

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
        """The position of the deepest node on ``path``, and how many parts of the path exist.

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
    text: str, *, file: str, rendered: bool = False, budget: LoadBudget | None = None
) -> tuple[list[YamlDocument], list[ManifestError]]:
    """Every document of ``text``, and every error found in it.

    Documents before a syntax error are returned; the parser cannot resume
    after one, so nothing after it is. Empty documents are dropped. A file
    with a document over the size limits (or beyond what ``budget``, the
    commit's, has left) yields only that error: nothing of it is composed.
    """
    documents: list[YamlDocument] = []
    errors: list[ManifestError] = []

    def at(mark: Any) -> SourceLocation:
        if mark is None:
            return SourceLocation(file, None, None, rendered)
        return SourceLocation(file, mark.line + 1, mark.column + 1, rendered)

    budget = budget if budget is not None else LoadBudget()
    oversized = _measure(text, at=at, budget=budget)
    if oversized is not None:
        return [], [oversized]
    loader = _PositionLoader(text)
    index = 0
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


@dataclass(frozen=True)
class _Breach:
    message: str
    commit: bool = False  # the commit's limits, not the document's: stop reading files


@dataclass
class _Open:
    """A collection being measured: where it started, and its anchor."""

    anchor: str | None
    depth: int
    nodes: int  # the document's counts when it started
    size: int
    deepest: int


@dataclass
class _Document:
    """Counts of the document being measured, aliases expanded."""

    nodes: int = 0
    size: int = 0
    aliased: bool = False
    # anchor -> (nodes, bytes, height) once its node is complete; None while open.
    anchors: dict[str, tuple[int, int, int] | None] = field(default_factory=dict)
    stack: list[_Open] = field(default_factory=list)


def _measure(
    text: str, *, at: Callable[[Any], SourceLocation], budget: LoadBudget
) -> ManifestError | None:
    """The first size limit the documents of ``text`` break, or None (then they are charged).

    Reads only the event stream, in constant memory: an alias adds the counts
    its anchor's node had, so expansion is measured without expanding. Syntax
    errors are left to the composer, which reports them with the documents
    before them.
    """
    if budget.exhausted:
        return ManifestError(at(None), "not read: the commit is already over its size limits")
    loader = _PositionLoader(text)
    document = _Document()
    try:
        while loader.check_event():
            event: yaml.Event = loader.get_event()  # type: ignore[no-untyped-call]
            breach = _measure_event(event, document, budget=budget)
            if breach is not None:
                budget.exhausted = budget.exhausted or breach.commit
                return ManifestError(at(event.start_mark), breach.message)
            if isinstance(event, yaml.DocumentEndEvent):
                if document.nodes:
                    budget.documents_left -= 1
                budget.nodes_left -= document.nodes
                budget.bytes_left -= document.size
                document = _Document()
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return None


def _measure_event(event: yaml.Event, document: _Document, *, budget: LoadBudget) -> _Breach | None:
    stack = document.stack
    depth = len(stack) + 1
    if isinstance(event, yaml.AliasEvent):
        anchor = event.anchor
        if anchor not in document.anchors:
            return None  # undefined: the composer reports it
        measured = document.anchors[anchor]
        if measured is None:
            return _Breach("recursive YAML alias")
        nodes, size, height = measured
        document.aliased = True
        if stack:
            stack[-1].deepest = max(stack[-1].deepest, depth + height - 1)
    elif isinstance(event, yaml.ScalarEvent):
        nodes, size = 1, len(event.value)
        if stack:
            stack[-1].deepest = max(stack[-1].deepest, depth)
        if event.anchor is not None:
            document.anchors[event.anchor] = (1, size, 1)
    elif isinstance(event, yaml.CollectionStartEvent):
        if depth > MAX_DEPTH:
            return _Breach(f"nested deeper than {MAX_DEPTH} levels")
        if event.anchor is not None:
            document.anchors[event.anchor] = None
        stack.append(_Open(event.anchor, depth, document.nodes, document.size, depth))
        nodes, size = 1, 0
    elif isinstance(event, yaml.CollectionEndEvent):
        done = stack.pop()
        if done.deepest > MAX_DEPTH:
            return _Breach(f"nested deeper than {MAX_DEPTH} levels (via aliases)")
        if done.anchor is not None:
            document.anchors[done.anchor] = (
                document.nodes - done.nodes,
                document.size - done.size,
                done.deepest - done.depth + 1,
            )
        if stack:
            stack[-1].deepest = max(stack[-1].deepest, done.deepest)
        return None
    else:
        return None
    document.nodes += nodes
    document.size += size
    return _over_limits(document, budget)


def _over_limits(document: _Document, budget: LoadBudget) -> _Breach | None:
    aliasing = " (too much aliasing)" if document.aliased else ""
    if document.size > MAX_OBJECT_BYTES:
        return _Breach(
            f"document expands to more than {_mib(MAX_OBJECT_BYTES)} of text, the limit "
            f"for one object{aliasing}"
        )
    if document.nodes > MAX_OBJECT_NODES:
        return _Breach(
            f"document expands to more than {MAX_OBJECT_NODES} YAML nodes, the limit "
            f"for one object{aliasing}"
        )
    if document.size > budget.bytes_left:
        return _Breach(
            f"commit is over its limit of {_mib(MAX_COMMIT_BYTES)} of manifest text "
            "(all files, aliases expanded)",
            commit=True,
        )
    if document.nodes > budget.nodes_left:
        return _Breach(f"commit is over its limit of {MAX_COMMIT_NODES} YAML nodes", commit=True)
    if budget.documents_left <= 0:
        return _Breach(f"commit is over its limit of {MAX_COMMIT_DOCUMENTS} objects", commit=True)
    return None


def _mib(size: int) -> str:
    return f"{size / _MiB:g} MiB"


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
    """Refuse what the constructor must never see: foreign tags, malformed scalars.

    Iterative, and each distinct node is visited once (an alias is the same
    node again), so the walk costs what the file holds, not what it expands
    to; sizes, depth and recursive aliases were measured before composing.
    Also reports duplicate keys, which PyYAML would silently collapse (the
    Kubernetes API server rejects them).
    """
    errors: list[ManifestError] = []
    seen: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        problem = _check_node(node, at=at, loader=loader)
        if problem:
            errors.extend(problem)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return errors


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
