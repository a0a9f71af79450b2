"""The documentation holds together: every relative link in README.md and docs/*.md resolves (files
and #anchors), the README stays a first screen (at most 250 lines), its first two code blocks are the
two commands (CI runs the second one), and the line counts its learning path states are near the truth.

Only the standard library: links are read with a regular expression, anchors with GitHub's slug rule.
Each check is a function of the text, so a test below also feeds it broken text and sees it fail.
"""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
# The learning path's "~N lines" are rounded, and the files grow and shrink with every change;
# 35% is wide enough for ordinary edits and narrow enough to catch a step that doubled or halved.
LINE_COUNT_TOLERANCE = 0.35

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages():
    return [README] + sorted((ROOT / "docs").glob("*.md"))


def prose(text):
    """The text without fenced code blocks (a link-like string in code is not a link)."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
            continue
        out.append("" if inside else line)
    return "\n".join(out)


def code_blocks(text):
    """The fenced code blocks of a Markdown text, in order, each as its text."""
    blocks, current = [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def slug(heading):
    """GitHub's anchor for a heading: lowercase, punctuation other than - and _ dropped, spaces -> -."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text counts
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every anchor a Markdown text defines: its headings' slugs, GitHub's -1, -2 for repeats."""
    seen, found = {}, set()
    for line in prose(text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def broken_links(page, text):
    """The relative links of ``text`` (the page at ``page``) whose file or #anchor does not exist."""
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{target} (an anchor into a file that is not Markdown)")
    return broken


def learning_path_steps(text):
    """The README's learning path as [(stated lines, [paths it names])], one per numbered step."""
    section = re.search(r"^## The learning path\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## The learning path' section"
    steps = re.split(r"^\d+\. ", section.group(1), flags=re.M)[1:]
    out = []
    for step in steps:
        stated = re.search(r"\(~([\d,]+) lines\)", step)
        assert stated, f"a learning-path step states no '(~N lines)': {step[:80]!r}"
        paths = re.findall(r"`((?:minivgg|scripts)/[\w./-]*)`", step)
        out.append((int(stated.group(1).replace(",", "")), paths))
    return out


def lines_of(paths):
    """Lines of Python in the named files and folders (recursively), each file counted once."""
    files = set()
    for p in paths:
        full = ROOT / p
        files |= set(full.rglob("*.py")) if full.is_dir() else {full}
    return sum(len(f.read_text().splitlines()) for f in files)


def commands(block):
    """A shell block as its commands: split on && and newlines, `python -m pip` read as `pip`, -q dropped."""
    out = []
    for part in re.split(r"&&|\n", block):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:  # a quote that closes on a later line of a shell script: not a command we compare
            words = part.split()
        words = [w for w in words if w not in ("-q", "--quiet")]
        if words[:3] == ["python", "-m", "pip"]:
            words = ["pip"] + words[3:]
        if words:
            out.append(words)
    return out


# --- the checks -------------------------------------------------------------------------------------


def test_every_relative_link_resolves():
    broken = {p.relative_to(ROOT).as_posix(): broken_links(p, p.read_text()) for p in pages()}
    broken = {k: v for k, v in broken.items() if v}
    assert not broken, broken


def test_the_link_check_can_fail():
    """A missing file, a missing anchor and a link inside code (ignored) are each told apart."""
    text = ("[a](docs/glossary.md#gemm) [b](docs/no-such-page.md) [c](docs/glossary.md#no-such-term)\n"
            "[d](#the-learning-path) [e](#nowhere) [f](https://example.org/x#y)\n"
            "```\n[g](not/a/link.md)\n```\n")
    broken = broken_links(README, text)
    assert broken == ["docs/no-such-page.md (no such file)",
                      "docs/glossary.md#no-such-term (no heading #no-such-term in docs/glossary.md)",
                      "#nowhere (no heading #nowhere in README.md)"], broken


def test_slugs_follow_githubs_rule():
    assert slug("Why this class? Attribution maps, sanity-checked") == "why-this-class-attribution-maps-sanity-checked"
    assert slug("Numba, @njit") == "numba-njit"
    assert slug("The `reference` extra") == "the-reference-extra"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_readme_is_a_first_screen():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_the_first_two_code_blocks_are_the_two_commands_and_ci_runs_the_second():
    blocks = code_blocks(README.read_text())
    assert len(blocks) >= 2, blocks
    setup, tests = commands(blocks[0]), commands(blocks[1])
    # 1. set up and run the main job on the bundled photo
    assert ["pip", "install", "-e", "."] in setup, setup
    visualize = [c for c in setup if c[:2] == ["python", "scripts/visualize.py"]]
    assert visualize and (ROOT / visualize[0][2]).is_file(), setup
    # 2. the tests, and CI runs exactly these commands (it may add flags such as -q, which commands() drops)
    assert any(c[:2] == ["pip", "install"] for c in tests) and ["python", "-m", "pytest"] in tests, tests
    ci = [c for line in (ROOT / ".ci" / "run").read_text().splitlines() for c in commands(line)]
    missing = [" ".join(c) for c in tests if c not in ci]
    assert not missing, f".ci/run does not run what README.md tells users to: {missing}"


def test_the_command_check_can_fail():
    assert ["pip", "install", "-e", ".[test,reference]"] in commands('python -m pip install -q -e ".[test,reference]"')
    assert ["pip", "install", "-e", ".[test]"] not in commands('python -m pip install -q -e ".[test,reference]"')
    assert code_blocks("x\n```sh\na\n```\ny\n```\nb && c\n```\n") == ["a", "b && c"]


def test_learning_path_line_counts_are_near_the_real_ones():
    steps = learning_path_steps(README.read_text())
    assert len(steps) >= 7, steps  # layers, network, files, visualize, explain, features, scripts
    wrong = []
    for stated, paths in steps:
        assert paths, f"a step names no minivgg/ or scripts/ path (stated ~{stated} lines)"
        real = lines_of(paths)
        if abs(stated - real) > LINE_COUNT_TOLERANCE * real:
            wrong.append(f"{', '.join(paths)}: says ~{stated} lines, has {real}")
    assert not wrong, wrong


def test_the_line_count_check_can_fail():
    """A stated count far from the truth is caught: minivgg/layers/ is not ~10 lines."""
    text = "## The learning path\n\n1. `minivgg/layers/` (~10 lines): layers.\n\n## Next\n"
    [(stated, paths)] = learning_path_steps(text)
    assert stated == 10 and paths == ["minivgg/layers/"]
    assert abs(stated - lines_of(paths)) > LINE_COUNT_TOLERANCE * lines_of(paths)


def test_readmes_receptive_field_table_is_what_the_network_computes():
    # The README's "what each layer sees" rows, read back and held to model.receptive_field's closed form.
    from minivgg.network.receptive_field import receptive_field
    from minivgg.network.table import conv_base

    lines = [line.strip() for line in README.read_text().splitlines() if line.strip().startswith("| ")]
    head = next(line for line in lines if line.startswith("| layer | block1_conv2"))
    i = lines.index(head)
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    names, size, stride = cells(head)[1:], cells(lines[i + 2])[1:], cells(lines[i + 3])[1:]
    assert cells(lines[i + 2])[0] == "size" and cells(lines[i + 3])[0] == "stride"
    rows = conv_base("vgg16")
    for name, s, st in zip(names, size, stride, strict=True):
        rf = receptive_field(rows, name)
        assert (rf.size, rf.stride) == (int(s), int(st)), name
