"""The README's code runs as written, and README.md and docs/*.md link only to files in the
repository (a user's clone has nothing outside it)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def python_blocks(path):
    """The fenced ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_examples():
    assert len(python_blocks(ROOT / "README.md")) >= 2


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path):
    # One interpreter for all blocks, in order (later ones use earlier names, as a reader's
    # session would), in a scratch directory, so kernel switches and files stay out of this run.
    code = "\n\n".join(python_blocks(ROOT / "README.md"))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]


def _targets(text):
    """Relative targets of Markdown links and images, and any `../` path mentioned in code."""
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    outside = re.findall(r"`(\.\./[^`\s]+)`", text)
    return [t for t in links if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
            ] + outside


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve_to_files_in_the_repository(page):
    broken = []
    for target in _targets(page.read_text()):
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists() or ROOT not in path.parents:
            broken.append(target)
    assert not broken, f"{page.name} links to files users do not have: {broken}"
