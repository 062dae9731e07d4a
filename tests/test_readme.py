"""The README cannot drift from the code: its Python example runs and prints what it says it
prints, every `python -m MODULE` it names exists, every document it links is there, and every
file of the repository that it or docs/ names exists. It also stays short."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SCREEN_LINES = 100  # the front door: the commands and the headline results; the rest goes to docs/

# a repository file named in the text: rooted at a top-level folder, with a file extension
REPO_FILE = re.compile(r"(?<![\w/.])((?:rs_kernels|rsnet|bench|tests|csrc|docs|\.ci)/[\w./-]*\.(?:py|sh|md|cpp|cu|h))\b")


def readme() -> str:
    return README.read_text()


def first_python_block(text: str) -> str:
    match = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md has no ```python block"
    return match.group(1)


@pytest.mark.slow  # a second interpreter, importing torch and Triton
def test_example_runs_and_prints_what_it_shows():
    code = first_python_block(readme())
    shown = re.search(r"^print\(.*?#\s*(.+)$", code, re.M)
    assert shown, "the example's print line must show its output in a trailing comment"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == shown.group(1).strip()


def test_example_uses_the_public_ops():
    code = first_python_block(readme())
    import rs_kernels

    used = set(re.findall(r"rs_kernels\.(\w+)\(", code))
    assert {"em_attention", "random_walk", "cu_seqlens_from_lengths"} <= used
    assert used <= set(rs_kernels.__all__), f"not public in rs_kernels: {used - set(rs_kernels.__all__)}"


def test_every_module_named_exists():
    modules = set(re.findall(r"python -m (\w[\w.]*)", readme()))
    assert {"rsnet.train", "rsnet.evaluate"} <= modules  # the pattern finds the commands
    missing = [m for m in sorted(modules) if importlib.util.find_spec(m) is None]
    assert not missing, f"README.md names modules that do not exist: {missing}"


def test_every_linked_document_exists():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme())
    local = [link for link in links if "://" not in link]
    assert "docs/design.md" in local
    missing = [link for link in local if not (ROOT / link).is_file()]
    assert not missing, f"README.md links files that do not exist: {missing}"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_repository_file_named_exists(doc):
    named = set(REPO_FILE.findall(doc.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_docs_do_not_point_outside_the_clone():
    for doc in [README, *DOCS]:
        text = doc.read_text()
        assert "../shared" not in text and "/work/" not in text, doc.name
        assert not re.search(r"DESIGN(\.md)? ?§", text), f"{doc.name} cites the old design notes"


def test_readme_fits_a_screen():
    lines = readme().splitlines()
    assert len(lines) <= SCREEN_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_image_shown_exists_and_is_small():
    images = re.findall(r'<img src="([^"]+)"', readme()) + re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme())
    assert images, "the README shows no picture"
    missing = [image for image in images if not (ROOT / image).is_file()]
    assert not missing, f"README.md shows images that do not exist: {missing}"
    large = [image for image in images if (ROOT / image).stat().st_size > 150_000]
    assert not large, f"README.md shows images over 150 kB: {large}"
