"""Plain-text tables for the terminal: aligned columns under a rule."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(
    titles: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> str:
    """Columns padded to their widest cell; those in `right` (numbers) right-aligned."""
    widths = [max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(titles)]

    def line(texts: Sequence[str]) -> str:
        return "  ".join(
            t.rjust(w) if i in right else t.ljust(w)
            for i, (t, w) in enumerate(zip(texts, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(titles), rule, *(line(r) for r in rows)])
