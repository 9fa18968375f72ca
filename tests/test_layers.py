"""The layers of the tree (reasonseg/README.md): every module of reasonseg/, export/, training/ and ros_ws/ imports
only from layers below its own (or its own package), function-level and annotation-only (`if TYPE_CHECKING:`)
imports included, and the module graph has no cycle. Read from the source text, nothing is imported."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package -> layer. A module may import a lower layer, or anything in its own package. Same layer, other package:
# not allowed (models and backends know nothing of each other; segmenters and data neither).
LAYERS: dict[str, int] = {
    "reasonseg": 0,             # the package's own __init__ (a docstring)
    "reasonseg.core": 0,        # errors, prompt / result / settings types, image codec, files, cache, model loading
    "reasonseg.backends": 1,    # graph runners: onnxruntime, OpenVINO, TensorRT
    "reasonseg.models": 1,      # one definition of every model (torch modules, configs, weight conversion)
    "reasonseg.data": 2,        # dataset readers (training, tests, benchmarks)
    "reasonseg.segmenters": 2,  # promptable segmenters: registry + one folder per kind
    "reasonseg.grounding": 3,   # instruction -> target: query, resolver, detector, LLM / VLM grounders
    "reasonseg.pipelines": 4,   # grounding + segmenter per frame, fallbacks, tracking
    "reasonseg.settings": 5,    # validation (choices from the registries), YAML / ROS-parameter loading, schema
    "reasonseg.runtime": 6,     # the engine a node runs: frame gate, asynchronous grounding, health
    "reasonseg_export": 7,      # the export tree (top-level export/): exporters, format table, parity checks
    "reasonseg.cli": 8,         # the `reasonseg` command
    "training": 8,              # the training tree (top-level training/)
    "reasonseg_perception": 9,  # ROS 2 nodes and tools (ros_ws/)
    "reasonseg_bringup": 9,     # ROS 2 launch file (ros_ws/)
}
EXPORT_TREE = "reasonseg_export"
MAY_IMPORT_EXPORT_TREE = ("reasonseg.cli", "training")  # the runtime and the nodes never do


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every Python module of the four trees, by its import name."""
    found: dict[str, Path] = {}
    for path in sorted((root / "reasonseg").rglob("*.py")):
        found[".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = path
    for path in sorted((root / "export").rglob("*.py")):
        found[".".join((EXPORT_TREE, *path.relative_to(root / "export").with_suffix("").parts))
              .removesuffix(".__init__")] = path
    for path in sorted((root / "training").rglob("*.py")):
        found[".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = path
    for pkg in ("reasonseg_perception", "reasonseg_bringup"):
        base = root / "ros_ws" / "src" / pkg
        for path in sorted(p for p in base.rglob("*.py") if p.name != "setup.py" and ".egg-info" not in str(p)):
            rel = path.relative_to(base)
            parts = rel.with_suffix("").parts if rel.parts[0] == pkg else (pkg, *rel.with_suffix("").parts)
            found[".".join(p.removesuffix(".launch") for p in parts).removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The tree's modules `name` imports anywhere in its file (top level, functions, `if TYPE_CHECKING:`,
    import_module("...")), each resolved to the deepest module that exists."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            targets |= {f"{base}.{a.name}" for a in node.names} | {base}
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets.add(node.args[0].value)
    resolved = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imports_of(path, name, set(files)) for name, path in files.items()}


def layer_of(module: str) -> tuple[str, int] | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return (best, LAYERS[best]) if best is not None else None


def rule_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = [f"{m}: in no layer (add its package to LAYERS)" for m in graph if layer_of(m) is None]
    for src, targets in sorted(graph.items()):
        placed = layer_of(src)
        if placed is None:
            continue
        for dst in sorted(targets):
            there = layer_of(dst)
            if there is None:
                continue
            if dst.startswith(EXPORT_TREE) and not src.startswith((EXPORT_TREE, *MAY_IMPORT_EXPORT_TREE)):
                problems.append(f"{src} -> {dst}: only {', '.join(MAY_IMPORT_EXPORT_TREE)} may import the export tree")
            elif there[0] != placed[0] and there[1] >= placed[1] and not src.startswith(there[0] + "."):
                problems.append(f"{src} -> {dst}: layer {placed[0]} ({placed[1]}) may not import "
                                f"{there[0]} ({there[1]})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_four_trees_are_read() -> None:
    graph = import_graph()
    assert {"reasonseg.core.errors", "reasonseg_export.formats", "training.__main__",
            "reasonseg_perception.segmentation_node", "reasonseg_bringup.launch.driving"} <= set(graph)
    # function-level imports are seen: a builder imports its runner only when asked for one
    assert "reasonseg.segmenters.lite_sam.runners" in graph["reasonseg.segmenters.lite_sam.build"]
    # and so are annotation-only ones: a type is a dependency too
    assert "reasonseg.models.lite_sam.modeling" in graph["reasonseg.segmenters.lite_sam.runners"]


def test_every_import_goes_down_a_layer() -> None:
    problems = rule_violations(import_graph())
    assert not problems, "\n".join(problems)


def test_the_module_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_rules_catch_an_upward_import_and_a_cycle() -> None:
    graph = {"reasonseg.core.a": {"reasonseg.runtime.engine"}, "reasonseg.runtime.engine": {"reasonseg.core.a"},
             "reasonseg.segmenters.registry": {"reasonseg_export.sam2"}, "reasonseg_export.sam2": set()}
    problems = rule_violations(graph)
    assert any(p.startswith("reasonseg.core.a -> reasonseg.runtime.engine") for p in problems)
    assert any("only reasonseg.cli, training may import the export tree" in p for p in problems)
    assert cycles(graph) == [["reasonseg.core.a", "reasonseg.runtime.engine"]]
