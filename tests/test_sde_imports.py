"""sdelab.sde.base and sdelab.sde.reverse depend on each other one way: base -> reverse."""

import ast
import pathlib

import pytest

import sdelab
from sdelab.sde import ReverseSDE

SDE_DIR = pathlib.Path(sdelab.__file__).parent / "sde"


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports at run time, at the top or inside a function (relative
    names kept); imports under ``if TYPE_CHECKING:`` are for annotations only and skipped."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_reverse_never_imports_base_at_run_time():
    assert ".base" not in _imports(SDE_DIR / "reverse.py")
    assert ".reverse" in _imports(SDE_DIR / "base.py")


@pytest.mark.parametrize("bad", [3.0, "vp"])
def test_reverse_sde_of_a_non_sde_names_the_argument(bad):
    with pytest.raises(TypeError, match="sde must be a forward sdelab SDE .* got"):
        ReverseSDE(bad, lambda x, t: x)


def test_reverse_of_a_reverse_is_refused():
    rev = sdelab.VPSDE().reverse(lambda x, t: x)
    with pytest.raises(TypeError, match="sde must be a forward sdelab SDE .* got ReverseSDE"):
        ReverseSDE(rev, lambda x, t: x)
    with pytest.raises(TypeError, match="got the stochastic reverse-time SDE"):
        sdelab.sde.base.check_sde(rev)
