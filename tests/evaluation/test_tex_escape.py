"""itermask.evaluation.tables._tex_escape: every LaTeX special character of a label is escaped once."""
from itermask.evaluation.tables import _tex_escape


def test_every_special_character_is_escaped_once():
    assert _tex_escape(r"a_b {x} $5 ^2 ~ & 10% #1 \ 0.5±0.1") == (
        r"a\_b \{x\} \$5 \textasciicircum{}2 \textasciitilde{} \& 10\% \#1 \textbackslash{} 0.5$\pm$0.1")


def test_escapes_are_not_escaped_again():
    # a backslash becomes \textbackslash{} whose braces must stay braces (one pass, not chained replaces)
    assert _tex_escape("\\{") == r"\textbackslash{}\{"
    assert _tex_escape("plain text 42") == "plain text 42"
