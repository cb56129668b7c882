"""The package's layout: which module may import which, read from the source with ``ast``.

Imports go one way (DEVELOPING.md): the command line and the modules around the model
depend on the model, the model on the layers, the layers on the functional modules,
those on the geometry and the argument checks, and only ``conv``/``pool`` load compiled
kernels. The NumPy reference must not touch the kernels it is compared with. A module
may not reach into another module's private names (``from .conv import _helper``),
except the underscore infrastructure modules, which exist to be shared.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import cycnn

PACKAGE = Path(cycnn.__file__).resolve().parent

#: every module of the package -> the cycnn modules it may import (directly)
ALLOWED = {
    "_validate": set(),
    "_io": set(),
    "_dispatch": {"_cpu"},
    "_caches": set(),
    "_memory": set(),
    "_threads": {"_validate"},
    "geometry": {"_validate"},
    "reference": {"_validate", "geometry"},
    "conv": {"_caches", "_dispatch", "_threads", "_validate", "geometry"},
    "pool": {"_dispatch", "_threads", "_validate", "geometry"},
    "norm": {"_dispatch", "_threads", "_validate"},
    "dropout": {"_validate"},
    "augment": {"_validate"},
    "metrics": {"_validate"},
    "activations": {"_dispatch", "_threads", "_validate"},
    "dense": {"_validate"},
    "losses": {"_validate", "activations"},
    "gradcheck": {"_validate"},
    "optim": {"_validate"},
    "schedules": {"_validate", "optim"},
    "datasets": {"_io", "_validate"},
    "layers": {"_validate", "activations", "conv", "dense", "dropout", "geometry", "losses",
               "norm", "pool"},
    # Sequential.fit and .save are one-line conveniences that hand over to training.py and
    # checkpoint.py (imported inside the methods); nothing else in model.py uses them
    "model": {"_memory", "_sharding", "_threads", "_validate", "layers", "training",
              "checkpoint"},
    # a training step cut into one shard per thread: the model's own passes on each shard,
    # and in a worker process the loss it rebuilds from its options
    "_sharding": {"_memory", "_threads", "layers"},
    "training": {"_sharding", "_threads", "_validate", "layers", "optim", "schedules"},
    "checkpoint": {"_io", "_validate", "layers", "model", "optim", "schedules"},
    "interop": {"_io", "layers", "model"},
    "zoo": {"_validate", "layers", "model"},
    "recipes": {"augment", "layers", "optim", "schedules", "zoo"},
    # image files as model input, and matplotlib drawings: NumPy (and Pillow, matplotlib)
    "images": set(),
    "plots": set(),
    "cli": {"__init__", "_notebooks", "_threads", "_validate", "activations", "checkpoint",
            "datasets", "images", "interop", "losses", "metrics", "optim", "plots",
            "recipes", "zoo"},
    "_notebooks": set(),
    # the checkers use only cycnn's public names, through the package
    "check": {"__init__"},
    "__main__": {"cli"},
    "__init__": None,  # gathers everything
}

#: names model.py may take from layers.py: the base class and the loss, never a
#: concrete layer type (the model must not special-case layers)
MODEL_FROM_LAYERS = {"Layer", "SoftmaxCrossEntropy"}


def _modules():
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


def _is_module(name):
    try:
        return importlib.util.find_spec(f"cycnn.{name}") is not None
    except (ImportError, ValueError):
        return False


def _cycnn_imports(name):
    """``[(module, imported names)]`` of every import of a cycnn module in ``name``.py,
    including imports inside functions."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                if node.module is None:  # a submodule, or a name defined in __init__
                    found += [(a.name, []) if _is_module(a.name) else ("__init__", [a.name])
                              for a in node.names]
                else:
                    found.append((node.module.split(".")[0], [a.name for a in node.names]))
            elif node.module and node.module.split(".")[0] == "cycnn":
                parts = node.module.split(".")
                target = parts[1] if len(parts) > 1 else "__init__"
                found.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cycnn":
                    found.append((parts[1] if len(parts) > 1 else "__init__", []))
    return found


def test_every_module_has_a_rule():
    missing = [m for m in _modules() if m not in ALLOWED]
    assert not missing, f"add these modules to ALLOWED (and to DEVELOPING.md): {missing}"


@pytest.mark.parametrize("name", [m for m in ALLOWED if ALLOWED[m] is not None])
def test_imports_go_one_way(name):
    if not (PACKAGE / f"{name}.py").exists():
        pytest.skip(f"cycnn/{name}.py does not exist")
    used = {module for module, _ in _cycnn_imports(name)}
    extra = sorted(used - ALLOWED[name])
    assert not extra, f"cycnn/{name}.py imports {extra}, which its layer may not depend on"


@pytest.mark.parametrize("name", [m for m in ALLOWED if ALLOWED[m] is not None])
def test_no_private_names_of_other_modules(name):
    if not (PACKAGE / f"{name}.py").exists():
        pytest.skip(f"cycnn/{name}.py does not exist")
    bad = [f"{module}.{n}" for module, names in _cycnn_imports(name) for n in names
           if n.startswith("_") and not module.startswith("_")]
    assert not bad, f"cycnn/{name}.py imports private names of other modules: {bad}"


def test_model_knows_no_concrete_layer():
    names = {n for module, names in _cycnn_imports("model") if module == "layers" for n in names}
    assert names <= MODEL_FROM_LAYERS, names - MODEL_FROM_LAYERS


def test_the_rules_catch_a_back_edge(tmp_path, monkeypatch):
    """The checker itself: a planted back-edge from the reference to the kernels is seen."""
    fake = tmp_path / "reference.py"
    fake.write_text("from .conv import _conv\nfrom . import geometry\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert {m for m, _ in _cycnn_imports("reference")} == {"conv", "geometry"}
    with pytest.raises(AssertionError, match="imports \\['conv'\\]"):
        test_imports_go_one_way("reference")
    with pytest.raises(AssertionError, match="private names .*conv._conv"):
        test_no_private_names_of_other_modules("reference")


def test_public_names_come_from_the_submodules():
    """cycnn.__all__ is the submodules' own lists, so the two cannot drift apart."""
    import sys

    gathered = [n for m in cycnn._PUBLIC_MODULES for n in sys.modules[f"cycnn.{m}"].__all__]
    assert cycnn.__all__[:len(gathered)] == gathered
    assert len(set(cycnn.__all__)) == len(cycnn.__all__), "a name is exported twice"
    for name in cycnn.__all__:
        assert hasattr(cycnn, name), name
