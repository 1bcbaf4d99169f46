"""docs/design.md and the references to it stay true to each other.

Code and READMEs cite the design document as "docs/design.md section N[.M]"
or by anchor, "docs/design.md#<slug>" (GitHub's slug of a heading).  Every such
reference must name a heading that exists, and nothing may cite a design note
that is not in the repository.  The other way round, what the document names
in backquotes (a file, a module, a function, a constant) must exist in the
repository, so a rename that leaves the document behind fails here.

Reads files only: no root, no build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs" / "design.md"
SOURCE_SUFFIXES = {".py", ".c", ".h", ".md", ".toml", ".mk", ".sh", ".lua", ".txt"}
SKIPPED_DIRS = {"build", "__pycache__", "node_modules"}
# Sections that describe code on another branch: their names need not exist here.
UNMERGED_SECTIONS: set[str] = set()

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s")
# A line break inside a comment or docstring, with the comment leader of the next line.
LINE_BREAK = re.compile(r"[ \t]*\n[ \t]*(?:\*(?!/)|#|//)?[ \t]*")
SECTION_REF = re.compile(r"design\.md[`'\")\]]*,?\s+sections?\s+(\d+(?:\.\d+)*)")
ANCHOR_REF = re.compile(r"design\.md#([\w-]+)")
# Design notes that live outside the repository: a reader of the code cannot follow them.
OUTSIDE_NOTES = re.compile(r"\b(?:DESIGN|HANDOFF|PROTOCOL)\.md\b")


def repository_files() -> list[Path]:
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        out += [Path(root, f) for f in files
                if Path(f).suffix in SOURCE_SUFFIXES or f == "Makefile"]
    return out


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def headings() -> list[tuple[str | None, str]]:
    """(section number or None, slug) of every heading outside code blocks."""
    out, fenced = [], False
    for line in DESIGN.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = HEADING.match(line)
        if m and not fenced:
            title = m.group(2)
            number = NUMBERED.match(title)
            out.append((number.group(1) if number else None, github_slug(title)))
    return out


def sections_by_number() -> dict[str, str]:
    """Section number -> the prose of that section (to its next heading), code blocks left out."""
    out, number, fenced = {}, None, False
    for line in DESIGN.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue        # code blocks: diagrams and commands, not names
        m = HEADING.match(line)
        if m:
            found = NUMBERED.match(m.group(2))
            number = found.group(1) if found else None
            out.setdefault(number, "")
            continue
        out[number] = out.get(number, "") + line + "\n"
    return out


def references() -> list[tuple[str, str, str]]:
    """(file, kind, target) of every reference to the design document."""
    out = []
    for path in repository_files():
        text = LINE_BREAK.sub(" ", path.read_text(errors="replace"))
        rel = str(path.relative_to(REPO))
        out += [(rel, "section", m.group(1)) for m in SECTION_REF.finditer(text)]
        out += [(rel, "anchor", m.group(1)) for m in ANCHOR_REF.finditer(text)]
    return out


def test_the_design_document_has_its_numbered_sections():
    """The checks below mean something: the document parses into numbered, unique sections."""
    numbers = [n for n, _ in headings() if n]
    assert len(numbers) >= 10, numbers
    assert len(numbers) == len(set(numbers)), f"section numbers used twice: {numbers}"
    for needed in ("3", "4.1", "4.2", "5", "6", "7.1", "7.2", "8", "10", "11"):
        assert needed in numbers, f"docs/design.md has no section {needed}"


def test_every_section_reference_names_a_heading():
    numbers = {n for n, _ in headings() if n}
    refs = [r for r in references() if r[1] == "section"]
    assert len(refs) >= 10, refs       # the code cites it; a broken pattern would find nothing
    missing = [f"{f}: docs/design.md section {t}" for f, _, t in refs if t not in numbers]
    assert not missing, "references to sections docs/design.md does not have:\n" + "\n".join(missing)


def test_every_anchor_reference_names_a_heading():
    slugs = {s for _, s in headings()}
    missing = [f"{f}: docs/design.md#{t}" for f, kind, t in references()
               if kind == "anchor" and t not in slugs]
    assert not missing, "anchors docs/design.md does not have:\n" + "\n".join(missing)


def test_nothing_cites_design_notes_outside_the_repository():
    me = Path(__file__).resolve()
    cites = []
    for path in repository_files():
        if path == me:
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_NOTES.search(line):
                cites.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not cites, ("cite docs/design.md instead of notes outside the repository:\n"
                       + "\n".join(cites))


# ------------------------------------------------- what the document names exists

CODE_SPAN = re.compile(r"`([^`]+)`")
PATH_LIKE = re.compile(r"^[\w./-]+\.(?:py|c|h|md|toml|mk|sh|lua)$|^[\w.-]+(?:/[\w.-]+)+/?$")
MODULE = re.compile(r"^(?:bench|plots|analysis|targets|hosts|miresga|switchhost|workloads|common)"
                    r"(?:\.\w+)+$")
FUNCTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\(\)$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


def named_in_design() -> dict[str, set[str]]:
    """Code spans of the merged sections, sorted into paths, modules, functions, constants."""
    names: dict[str, set[str]] = {"path": set(), "module": set(), "function": set(),
                                  "constant": set()}
    for number, text in sections_by_number().items():
        if number in UNMERGED_SECTIONS:
            continue
        for span in CODE_SPAN.findall(text.replace("\n", " ")):   # spans may wrap
            if span.startswith("build/"):
                continue        # built artifacts: not in a fresh clone
            if PATH_LIKE.match(span) and not span.startswith("python "):
                names["path"].add(span)
            elif MODULE.match(span):
                names["module"].add(span)
            elif m := FUNCTION.match(span):
                names["function"].add(m.group(1))
            elif CONSTANT.match(span):
                names["constant"].add(span)
    return names


def test_files_and_modules_the_design_names_exist():
    names = named_in_design()
    assert len(names["path"]) >= 20 and len(names["module"]) >= 3, names
    basenames = {p.name for p in repository_files()}
    missing = []
    for span in sorted(names["path"]):
        if "/" in span.rstrip("/"):
            if not (REPO / span).exists():
                missing.append(span)
        elif span not in basenames:
            missing.append(span)
    for module in sorted(names["module"]):
        base = REPO / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
            missing.append(module)
    assert not missing, ("docs/design.md names files or modules that do not exist (moved? "
                         "update the document):\n" + "\n".join(missing))


def test_functions_and_constants_the_design_names_exist():
    names = named_in_design()
    assert len(names["function"]) >= 30 and len(names["constant"]) >= 10, names
    source = "\n".join(p.read_text(errors="replace") for p in repository_files()
                       if p.suffix in {".c", ".h", ".py"})
    missing = sorted(f"{f}()" for f in names["function"]
                     if not re.search(rf"\b{re.escape(f)}\s*\(", source))
    missing += sorted(c for c in names["constant"] if not re.search(rf"\b{c}\b", source))
    assert not missing, ("docs/design.md names functions or constants the code does not have "
                         "(renamed? update the document):\n" + "\n".join(missing))
