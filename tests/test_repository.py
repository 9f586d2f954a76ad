"""A fresh `git clone` is the whole product: nothing tracked reaches outside the repository,
and a clone in an empty folder collects the whole suite on its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from tests.conftest import ROOT

# Path tokens: runs of characters that occur in file paths (a ':' ends one, so URLs and
# `a:b` pairs are not read as paths).
_TOKEN = re.compile(r"[\w.~@+\-/]+")
_MD_LINK = "]("
# Written as pieces throughout this file, so that it does not itself mention what it seeks.
PARENT_DIR = "." * 2
UP = PARENT_DIR + "/"
_QUOTED_UP = re.compile(r"""["']\.\.["']|\bos\.pardir\b""")
# A root-like variable's parent is above the repository by definition.
_ROOT_PARENT = re.compile(
    r"\b(?:ROOT|REPO|REPO_ROOT|PROJECT_ROOT|BASE_DIR|root|repo|repo_root|project_root)"
    r"\.parents?\b"
)
_FILE_ANCESTOR = re.compile(
    r"(?<![\w.])__file__\)(?:\.resolve\(\)|\.absolute\(\))?"
    r"(?P<chain>(?:\.parent\b)*)(?:\.parents\[(?P<index>\d+)\])?"
)

# Strings that look like escaping paths but are inputs, not references.
ALLOWED = {
    # a path-traversal Message-ID fed to the .eml writer, to show it stays in the outbox
    ("tests/letters/test_preview_and_outbox.py", UP * 2 + "etc/passwd@x"),
}


def _climbs_out(token: str, depth: int) -> bool:
    """Whether the relative path `token`, resolved at `depth` folders below the root,
    goes above the root at any step."""
    for part in token.split("/"):
        if part in ("", "."):
            continue
        depth += -1 if part == PARENT_DIR else 1
        if depth < 0:
            return True
    return False


def _relative_escapes(line: str, depth: int) -> list[str]:
    found = []
    for match in _TOKEN.finditer(line):
        token = match.group()
        if PARENT_DIR not in token.split("/") or "/" not in token or token.startswith("/"):
            continue
        if line[: match.start()].endswith(":"):
            continue  # scheme://host/..: a URL, not a file path
        # A Markdown link is resolved from the file's folder; anything else (a command in
        # a README, a path in code) may be read from the file's folder or from the root.
        in_link = line[: match.start()].endswith(_MD_LINK)
        starts = [depth] if in_link else [depth, 0]
        if any(_climbs_out(token, start) for start in starts):
            found.append(token)
    return found


def _file_ancestor_escapes(line: str, depth: int) -> list[str]:
    found = []
    for match in _FILE_ANCESTOR.finditer(line):
        level = depth + 1  # the file itself, one below its folder
        level -= match.group("chain").count(".parent")
        if match.group("index") is not None:
            level -= int(match.group("index")) + 1
        if level < 0:
            found.append(match.group())
    return found


def escapes(path: str, text: str, outside: Sequence[str] = ()) -> list[tuple[int, str]]:
    """(line, what) for each mention of a place above the repository root in the tracked
    file `path` (relative to the root). `outside`: absolute paths on this machine that no
    file may name either (the repository's own, and its siblings')."""
    depth = len(PurePosixPath(path).parent.parts)
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        hits = _relative_escapes(line, depth) + _file_ancestor_escapes(line, depth)
        hits += [m.group() for m in _QUOTED_UP.finditer(line)]
        hits += [m.group() for m in _ROOT_PARENT.finditer(line)]
        hits += [place for place in outside if place in line]
        found += [(number, hit) for hit in hits if (path, hit) not in ALLOWED]
    return found


def _tracked_texts(root: Path) -> list[tuple[str, str]]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.split(b"\0")
    texts = []
    for name in filter(None, names):
        try:
            texts.append((name.decode(), (root / name.decode()).read_text(encoding="utf-8")))
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the work tree but not yet committed
    return texts


def _is_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    probe = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True
    )
    return probe.returncode == 0 and Path(probe.stdout.strip()).resolve() == ROOT


needs_git = pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout")


# --- (a) nothing refers to a place above the repository ----------------------------------


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("README.md", f"thankly event send {UP}shared/samples/deal_closed.ru.json"),
        ("templates/README.md", f"Each follows `{UP}shared/LETTERS.md`"),
        ("templates/README.md", f"see [the guide]({UP}{UP}shared/LETTERS.md)"),
        ("docs/events.md", f"run it as `{UP}examples/events/x.json`"),  # from the root
        ("tests/conftest.py", "SAMPLES = ROOT" + '.parent / "sha' + 'red" / "samples"'),
        ("tests/conftest.py", "DOCS = Path(__file__).resolve()" + ".parents[2] / 'shared'"),
        ("tests/conftest.py", "HERE = Path(__file__)" + ".parent.parent.parent"),
        ("worker/x.py", 'open(os.path.join(BASE, "' + PARENT_DIR + '", "shared"))'),
        ("Makefile", f"\tcp tests/{UP}{UP}shared/DESIGN.md docs/"),
        ("README.md", "the contract is /srv/checkouts/shared/DESIGN.md"),
    ],
)
def test_the_checker_finds_a_planted_escape(path: str, line: str) -> None:
    text = f"first line\n{line}\nlast line\n"
    found = escapes(path, text, outside=["/srv/checkouts/shared"])
    assert found and all(number == 2 for number, _ in found), found


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("docs/events.md", f"every file in [`examples/events/`]({UP}examples/events/)"),
        ("tests/conftest.py", "ROOT = Path(__file__).resolve()" + ".parents[1]"),
        ("worker/migrate.py", "str(Path(migrations.__file__).parent)"),
        ("tests/test_x.py", 'RULES_FILE.parent / "rules.demo.yaml"'),
        ("worker/x.py", "path.parent.mkdir(parents=True, exist_ok=True)"),
        ("README.md", "see https://example.org/a/" + UP + "b and worker/" + UP + "tasks/x.py"),
        ("README.md", "an ellipsis.../ and 1..5 and `…/`"),
    ],
)
def test_the_checker_leaves_paths_inside_the_repository_alone(path: str, line: str) -> None:
    assert escapes(path, line, outside=["/srv/checkouts/shared"]) == []


@needs_git
def test_no_tracked_file_refers_to_a_path_above_the_repository() -> None:
    # Absolute paths that exist only on this machine: the work tree itself and whatever
    # lies beside it (a `shared/` folder, say). A user's clone has neither.
    beside = Path(os.path.dirname(ROOT))
    outside = [str(ROOT) + "/"] + [str(p) for p in beside.iterdir() if p.resolve() != ROOT]
    found = [
        f"{path}:{number}: {hit}"
        for path, text in _tracked_texts(ROOT)
        for number, hit in escapes(path, text, outside)
    ]
    assert found == [], "users clone the repository alone:\n" + "\n".join(found)


@needs_git
def test_no_tracked_file_cites_a_document_users_do_not_have() -> None:
    """The product contract and the letter guide live outside the repository: a file that
    cites them by name ("see DESIGN.md") sends a user to something a clone lacks."""
    names = ("DESIGN" + ".md", "LETTERS" + ".md")
    found = [
        f"{path}:{number}"
        for path, text in _tracked_texts(ROOT)
        if path != "tests/test_repository.py"
        for number, line in enumerate(text.splitlines(), start=1)
        if any(name in line for name in names)
    ]
    assert found == [], "cite docs/ or the README instead:\n" + "\n".join(found)


# --- (b) a clone in an empty folder is self-sufficient -----------------------------------

# Runs in the clone: import `worker` exactly as the suite will, then collect.
_COLLECT = """
import sys, pytest, worker
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", ""])  # chaos too
print("WORKER-FROM", worker.__file__)
sys.exit(code)
"""


@pytest.mark.slow
@needs_git
def test_a_fresh_clone_in_an_empty_folder_collects_the_whole_suite(tmp_path: Path) -> None:
    # tmp_path is empty, so the clone has no siblings: a test that reaches for
    # a sibling of the repository finds nothing there, as on a user's machine.
    clone = tmp_path / "thankly"
    subprocess.run(
        ["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thankly"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THANKLY_", "PYTEST_"))}
    # The venv's editable install points at this work tree; the clone's own code must win.
    env["PYTHONPATH"] = str(clone)
    result = subprocess.run(
        [sys.executable, "-c", _COLLECT],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"WORKER-FROM {clone / 'worker' / '__init__.py'}" in output

    ids = [line for line in result.stdout.splitlines() if "::" in line]
    summary = re.search(r"^(\d+) tests? collected in .*$", result.stdout, re.MULTILINE)
    assert summary and "error" not in summary.group(), output[-3000:]
    assert int(summary.group(1)) == len(ids)

    tracked = subprocess.run(
        ["git", "ls-files", ":(glob)tests/**/test_*.py"], cwd=clone, capture_output=True, text=True
    ).stdout.split()
    collected = {node.split("::", 1)[0] for node in ids}
    assert tracked and collected == set(tracked), "modules that collected nothing: " + ", ".join(
        sorted(set(tracked) - collected)
    )


# --- every sample a document names exists, and every sample is described ----------------

_SAMPLE_PATH = re.compile(r"examples/events/[\w.{},\-]+\.json")
_BRACES = re.compile(r"\{([^{}]*)\}")


def _expand(pattern: str) -> list[str]:
    match = _BRACES.search(pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [name for part in match.group(1).split(",") for name in _expand(head + part + tail)]


@pytest.mark.parametrize("document", ["README.md", "docs/events.md"])
def test_every_sample_event_a_document_names_exists(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    named = {name for found in _SAMPLE_PATH.findall(text) for name in _expand(found)}
    assert named, f"{document} names no sample event: is the pattern still right?"
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert missing == [], f"{document} names sample events that do not exist"


def test_the_samples_readme_describes_every_sample() -> None:
    folder = ROOT / "examples" / "events"
    described = set(re.findall(r"`([\w.\-]+\.json)`", (folder / "README.md").read_text()))
    assert described == {path.name for path in folder.glob("*.json")}


# --- every test the README's guarantees cite exists ---------------------------------------


def test_every_test_the_guarantees_table_cites_exists() -> None:
    """A promise in "Security and failure guarantees" names the tests that hold it; a
    renamed or deleted test must not leave the promise pointing at nothing."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Security and failure guarantees", 1)[1].split("\n## ", 1)[0]
    cited: list[tuple[str, str]] = []
    for row in section.splitlines():
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", row):
            current = path or current
            assert current, f"a test name without its file: {row}"
            cited.append((current, name))
    assert len(cited) > 20, "the pattern no longer finds the table's tests"
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []


# --- the README's walk through the code stays short and true ------------------------------

_CODE_PATH = re.compile(r"`((?:worker|tasks)/[\w/]+\.py)")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_the_readme_walk_from_webhook_to_smtp_names_at_most_six_files_that_exist() -> None:
    walk = _section((ROOT / "README.md").read_text(encoding="utf-8"), "## How an event travels")
    named = list(dict.fromkeys(_CODE_PATH.findall(walk)))
    assert 0 < len(named) <= 6, named
    assert [path for path in named if not (ROOT / path).is_file()] == []


def test_every_module_the_architecture_notes_name_exists() -> None:
    notes = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:worker|tasks|templates|config)/[\w/<>.]*)`", notes))
    concrete = {path for path in named if "<" not in path}
    assert concrete, "the pattern no longer finds the paths the notes name"
    assert sorted(path for path in concrete if not (ROOT / path).exists()) == []


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md", "docs/events.md"])
def test_every_module_a_document_names_exists(document: str) -> None:
    named = set(re.findall(r"(?:worker|tasks)/[\w/]+\.py", (ROOT / document).read_text()))
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []
