"""Every relative link and image in the README and the pages under docs/ points at something.

A link to a file must name one that exists; a link with an anchor (`page.md#heading`, or
`#heading` within the page) must name a heading of that page, slugged as GitHub does. Links
inside code (fenced blocks and inline spans) are not links, and web addresses are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](src), with an optional "title" after the target.
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def _prose(text: str) -> str:
    """The text with fenced code blocks and inline code blanked out, line breaks kept."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(lines))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page's headings give, with GitHub's -1, -2 suffixes for repeats."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link and image on a page."""
    text = _prose(page.read_text(encoding="utf-8"))
    found = []
    for match in sorted([*_LINK.finditer(text), *_HTML_SRC.finditer(text)], key=lambda m: m.start()):
        target = match.group(1)
        if not _EXTERNAL.match(target):
            found.append((text.count("\n", 0, match.start()) + 1, target))
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_links_every_docs_page() -> None:
    readme_targets = {target.partition("#")[0] for _, target in links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme_targets]
    assert unlinked == []


def test_slugs_follow_github() -> None:
    assert slug("Two engines: `--engine sql` (default) and `--engine datastream`") == (
        "two-engines---engine-sql-default-and---engine-datastream"
    )
    assert slug("`fraudstream run --source kafka` — the job on Kafka") == (
        "fraudstream-run---source-kafka--the-job-on-kafka"
    )
    assert slug("What is kept, and where") == "what-is-kept-and-where"


def test_a_broken_link_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[ok](other.md#other-page) [missing](nowhere.md) ![img](pic.png) [bad](#no-such)\n"
        "`[code](not-a-link.md)` [web](https://example.com/x.md) [across\nlines](gone.md)\n\n"
        "```\n[fenced](nor-this.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "nowhere.md: no such file",
        "pic.png: no such file",
        "#no-such: no heading with anchor #no-such",
        "gone.md: no such file",
    ]
    assert problems[-1].startswith("page.md:4: ")  # where the link starts
