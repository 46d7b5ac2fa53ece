"""Every input example in docs/PROFILES.md's Formats section parses, with the outcome the docs show."""
from pathlib import Path

from solbench.profiles import Classifier, read_profile, summarize

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROFILES.md"


def _input_blocks():
    text = DOC.read_text(encoding="utf-8")
    text = text[text.index("## Formats"):text.index("## Classification")]
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if cur is None:
                cur = []
            else:
                blocks.append("\n".join(cur) + "\n")
                cur = None
        elif cur is not None:
            cur.append(line)
    # Commands and their output are not inputs.
    return [b for b in blocks if not b.startswith(("$", "solbench"))]


def test_format_examples_in_the_docs_parse(tmp_path):
    blocks = _input_blocks()
    assert len(blocks) == 6
    formats = []
    for i, block in enumerate(blocks):
        f = tmp_path / f"example{i}.txt"
        f.write_text(block, encoding="utf-8")
        (prof,) = read_profile(f)
        s = summarize(prof, Classifier())
        assert s.share("unclassified") == 0, (i, s.targets)
        formats.append(prof.format)
    # Aligned text, CSV, boxed, markdown, GUI copy, key_averages.
    assert formats == ["nsys_kern_sum_table", "nsys_kern_sum_csv"] + ["nsys_kern_sum_table"] * 3 + ["torch_key_averages"]
    # The first example is the one whose warning and note the docs quote.
    (prof,) = read_profile(tmp_path / "example0.txt")
    assert prof.warnings[0].startswith("line 6: 1 row(s) do not line up with the column rule")
    assert "the other 48.7% is in rows not shown (elided with '...' at line 7)" in prof.notes[0]
