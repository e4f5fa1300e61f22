"""The README's snippets run, and CI runs the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_python_examples_run():
    blocks = _blocks(ROOT / "README.md", "python")
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    bash = _blocks(ROOT / "README.md", "bash")
    assert len(bash) == 2, "the README keeps exactly two commands: set-up + main job, and tests"
    setup, test = (b.strip() for b in bash)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci
    assert "torch==2.13.0" in setup and "torch==2.13.0" in ci
    assert "NO_ALBUMENTATIONS_UPDATE=1" in ci


@pytest.mark.parametrize("doc", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_python_snippets_run(doc):
    for code in _blocks(doc, "python"):
        exec(compile(code, str(doc), "exec"), {})
