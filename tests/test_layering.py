"""No module imports one above it: the layer list in docs/ARCHITECTURE.md is the rule, checked on the
source with an AST walk (function-level imports included, since those are how cycles hide)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"


def documented_layers() -> dict[str, int]:
    """`## Layers` in docs/ARCHITECTURE.md: numbered lines, lowest first, each naming `modules`."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for line in section.splitlines():
        m = re.match(r"\s*(\d+)\.\s+(.*)", line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2).split(":")[0]):
                layers[name] = int(m.group(1))
    assert layers, "docs/ARCHITECTURE.md has no '## Layers' list"
    return layers


def unit_of(module: str) -> str:
    """pipeline.costs.memory -> costs; pipeline.cli -> cli."""
    return module.split(".")[1] if module.count(".") else ""


def imports_of(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("pipeline")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pipeline"):
                continue
            if target == "pipeline":  # `from .. import _io`: the names are the modules
                out += [(node.lineno, f"pipeline.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return out


def test_every_package_unit_has_a_layer():
    layers = documented_layers()
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    missing = sorted(units - set(layers))
    assert not missing, f"add these to the '## Layers' list of docs/ARCHITECTURE.md: {missing}"


def test_no_module_imports_a_layer_above_or_beside_it():
    layers = documented_layers()
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit_of(".".join(path.relative_to(REPO).with_suffix("").parts))
        if here not in layers:
            continue
        for line, target in imports_of(path):
            there = unit_of(target)
            if there in ("", here) or there not in layers:
                continue
            if layers[there] >= layers[here]:
                violations.append(f"{path.relative_to(REPO)}:{line} ({here}, layer {layers[here]}) imports "
                                  f"{target} ({there}, layer {layers[there]})")
    assert not violations, "imports against docs/ARCHITECTURE.md's layers:\n" + "\n".join(violations)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The walk must catch what a module-level grep would miss, or the test above could not fail."""
    mod = PACKAGE / "costs" / "_layering_probe.py"
    mod.write_text("def f():\n    from ..codegen import arena\n    from .. import deploy\n")
    try:
        found = [t for _, t in imports_of(mod)]
    finally:
        mod.unlink()
    assert found == ["pipeline.codegen", "pipeline.deploy"]


def test_converter_settings_live_in_one_place():
    """Full-integer converter settings are set only by pipeline/tflite/converter.py (QuantizationConfig):
    the export, the cost models' reference graphs, benchmarks and test fixtures all call it."""
    one = PACKAGE / "tflite" / "converter.py"
    offenders = []
    for folder in ("pipeline", "tests", "benchmarks", "tools"):
        for path in (REPO / folder).rglob("*.py"):
            if path == one or path == Path(__file__).resolve():
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"TFLITE_BUILTINS_INT8|TFLITE_BUILTINS_ACTIVATIONS_INT16|inference_(in|out)put_type", line):
                    offenders.append(f"{path.relative_to(REPO)}:{lineno}")
    assert offenders == [], "converter settings outside pipeline/tflite/converter.py: " + ", ".join(offenders)
