"""The import layering of studio/ and probes/ (drawn in README.md's Layout): every arrow runs down, none in a circle.

Imports are read from the source, those inside functions included, so a late import cannot hide an arrow that runs up.
A module may import modules of lower layers, and within its own entry of a layer (probes/evaluate/ among
itself, say); every module must belong to a layer, so a new one is placed on purpose.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "probes")

# Bottom up. A name stands for that module or package and everything inside it.
LAYERS = [
    ("studio.errors",),  # the base: what every module may raise ...
    ("studio.files",),  # ... and read and write files with
    ("studio.fields",),  # strict JSON <-> frozen dataclasses
    ("studio.audiocraft",),  # audiocraft checkpoints -> transformers folders, for the loader above
    ("studio.model",),  # loading MusicGen, and its facts
    ("probes.rfm",),  # formats: an RFM probe ...
    ("probes.directions",),  # ... the other ways to find directions, and the names a bank records ...
    ("probes.bank",),  # ... and a concept bank file
    ("studio.schedules", "studio.sampling", "studio.melody"),
    ("studio.recipe",),
    ("studio.hub",),  # a bank on the Hugging Face Hub -> a folder in its cache, for the banks above
    ("studio.banks",),
    ("studio.plan",),
    ("studio.readout",),
    ("studio.control",),  # closed-loop steering: reads the readout probe, scales the plan
    ("studio.hooks", "studio.streaming"),
    ("studio.decode",),
    # the runtime's top: a recipe in, audio and readout out; a model loaded at its fastest faithful precision
    ("studio.generate", "studio.reference", "studio.precision"),
    ("probes.cluster",),  # the pipeline's stages as Ray tasks (Ray itself imported only when a cluster is used)
    ("probes.syntheory", "probes.activations", "probes.figures", "probes.transcribe"),
    ("probes.train", "probes.tinymusic", "probes.publish"),
    ("probes.starter", "probes.pooling"),  # train's pipeline: sized to a budget; run per pooling, to compare them
    ("probes.evaluate",),  # the offline pipeline's top
    ("studio.ui",),  # the page: the runtime and the pipeline's training
    ("studio.cli",),  # entry points
    ("probes.__main__",),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Our modules that `path` imports (absolute and relative, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] in PACKAGES)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(target: str, modules: dict[str, Path]) -> str | None:
    """`from probes.syntheory import CONCEPTS` names a package attribute, not a module: keep the module part."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def place_of(name: str) -> tuple[int, str] | None:
    """(layer index, the LAYERS entry) of a module: the longest entry that names it or a package above it."""
    matches = [
        (len(entry), index, entry)
        for index, layer in enumerate(LAYERS)
        for entry in layer
        if name == entry or name.startswith(entry + ".")
    ]
    return max(matches)[1:] if matches else None


def layer_of(name: str) -> int | None:
    place = place_of(name)
    return place[0] if place else None


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    edges = {}
    for name, path in modules.items():
        edges[name] = {resolve(t, modules) for t in imports_of(path, name)} - {None, name}
    return edges


def test_every_module_has_a_layer():
    placeless = [name for name in all_modules() if name not in PACKAGES and layer_of(name) is None]
    assert not placeless, f"add these modules to a layer of LAYERS (and README's Layout): {placeless}"


def test_imports_run_down_the_layers():
    upward = []
    for source, targets in graph().items():
        for target in targets - set(PACKAGES):
            (low, low_entry), (high, high_entry) = place_of(target), place_of(source)
            if low > high or (low == high and low_entry != high_entry):
                upward.append(f"{source} -> {target}")
    assert not upward, "imports that run up, or across a layer:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_checker_sees_late_and_relative_imports(tmp_path):
    """The reader must not miss the imports the layering is about: inside functions, relative ones."""
    source = tmp_path / "probes" / "evaluate" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from .clips import ClipStore\n\ndef f():\n    from studio.ui import serve\n    import studio.cli\n"
    )
    found = imports_of(source, "probes.evaluate.x")
    assert {"probes.evaluate.clips", "studio.ui", "studio.cli"} <= found
    assert layer_of("studio.ui") > layer_of("probes.evaluate") > layer_of("studio.generate") > layer_of("studio.model")
