"""The examples in the package's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import nsa_augment

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(nsa_augment.__path__, "nsa_augment.")
    if m.name not in ("nsa_augment.cli", "nsa_augment.__main__")  # __main__ runs the command on import
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_examples_exist():
    tested = sum(doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES)
    assert tested >= 10
