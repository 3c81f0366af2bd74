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


# ---------------------------------------------------------------------------- the reading order

AUTOGRAD_PAGE = ROOT / "docs" / "autograd.md"


def reading_lists(text=None):
    """docs/autograd.md's reading order: [(budget, [path, ...]), ...], one per "(budget: **N
    lines**)" paragraph, with the files of the numbered list that follows it."""
    text = AUTOGRAD_PAGE.read_text() if text is None else text
    section = text.split("## Reading order", 1)[1].split("\n## ", 1)[0]
    lists, current = [], None
    for line in section.splitlines():
        budget = re.search(r"\(budget: \*\*(\d+) lines\*\*\)", line)
        item = re.match(r"\d+\. \[`[^`]+`\]\((\.\./[^)]+)\)", line)
        if budget:
            current = (int(budget.group(1)), [])
            lists.append(current)
        elif item and current is not None:
            current[1].append((AUTOGRAD_PAGE.parent / item.group(1)).resolve())
        elif line.strip() and current is not None and current[1]:
            current = None  # a paragraph after the list ends it
    return lists


def line_count(path):
    return len(path.read_text().splitlines())


def test_reading_lists_are_parsed_from_the_page():
    text = ("## Reading order\n\nCore (budget: **10 lines**):\n\n1. [`a.py`](../a.py): x\n"
            "2. [`b.py`](../b.py): y\n\nProse.\n\nMore (budget: **5 lines**):\n\n"
            "1. [`c.py`](../c.py): z\n\n## Next\n\n1. [`d.py`](../d.py)\n")
    lists = reading_lists(text)
    assert [(budget, [p.name for p in paths]) for budget, paths in lists] == [
        (10, ["a.py", "b.py"]), (5, ["c.py"])]


def test_the_core_in_reading_order_exists_and_stays_within_its_budget():
    lists = reading_lists()
    core = [p.name for p in lists[0][1]]
    assert core[:2] == ["tensor.py", "autograd.py"], core  # the engine starts with its class
    for budget, paths in lists:
        missing = [p.name for p in paths if not p.is_file()]
        assert not missing, f"docs/autograd.md's reading order names missing files: {missing}"
        total = sum(line_count(p) for p in paths)
        assert total <= budget, (f"{[p.name for p in paths]} have {total} lines, over the "
                                 f"{budget}-line budget docs/autograd.md gives them: move what "
                                 "a learner need not read out of them (or raise the budget there)")


if __name__ == "__main__":  # the counts behind the reading order
    for budget, paths in reading_lists():
        for path in paths:
            print(f"{line_count(path):6d}  {path.relative_to(ROOT)}")
        print(f"{sum(line_count(p) for p in paths):6d}  total (budget {budget})\n")
