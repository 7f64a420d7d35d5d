"""No private Captum API in the package: no ``captum.*._*`` import, no override of a Captum
class's private methods. Captum's underscored modules change between releases without notice;
the public API is what its version pin promises."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "lpips_explain"


def private_captum_uses(source: str) -> list[str]:
    """Each private use of Captum in ``source``: imports, attribute chains, overrides."""
    tree = ast.parse(source)
    found: list[str] = []
    captum_names: set[str] = set()  # local names bound to captum objects

    def private(dotted: str) -> bool:
        parts = dotted.split(".")
        return parts[0] == "captum" and any(p.startswith("_") for p in parts[1:])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "captum":
                    captum_names.add((alias.asname or alias.name).split(".")[0])
                    if private(alias.name):
                        found.append(f"import {alias.name}")
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.split(".")[0] == "captum"):
            for alias in node.names:
                captum_names.add(alias.asname or alias.name)
                if private(f"{node.module}.{alias.name}"):
                    found.append(f"from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in captum_names:
                found.append(f"attribute {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module"):
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if any(isinstance(a, str) and private(a) for a in args):
                found.append(f"import_module({args[0]!r})")
        elif isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b).split(".")[0] for b in node.bases}
            if bases & captum_names:
                for item in node.body:
                    if (isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                            and item.name.startswith("_") and not item.name.endswith("__")):
                        found.append(f"override {node.name}.{item.name}")
    return found


def test_the_scanner_finds_planted_private_uses():
    planted = (
        "from captum.attr._utils.approximation_methods import SUPPORTED_METHODS\n"
        "import captum.attr._core.noise_tunnel as nt\n"
        "import captum\n"
        "x = captum.attr._utils.common\n"
        "from captum.attr import NoiseTunnel\n"
        "class T(NoiseTunnel):\n"
        "    def _add_noise_to_input(self):\n"
        "        pass\n"
        "    def __init__(self):\n"
        "        pass\n"
        "import importlib\n"
        "importlib.import_module('captum._utils.gradient')\n"
    )
    found = private_captum_uses(planted)
    assert len(found) == 5, found
    public = ("from captum.attr import IntegratedGradients, Saliency\n"
              "class S(Saliency):\n    def __init__(self):\n        pass\n"
              "y = _private_helper()\n")
    assert private_captum_uses(public) == []


def test_the_package_uses_only_public_captum():
    files = sorted(PACKAGE.rglob("*.py"))
    assert any("captum" in f.read_text() for f in files)  # the scan is not vacuous
    offenders = {str(f.relative_to(PACKAGE)): uses for f in files
                 if (uses := private_captum_uses(f.read_text()))}
    assert offenders == {}
