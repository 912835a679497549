"""itermask.io.workflow.rule_context: every attempt's log is kept (Snakemake deletes a job's
declared log before each attempt; the attempts history beside it is appended)."""
from types import SimpleNamespace

import pytest

from itermask.io.workflow import ATTEMPT_HEADER, attempts_path, rule_context


def fake_smk(log):
    return SimpleNamespace(threads=1, log=[str(log)], rule="demo_rule", wildcards={"subject": "01"})


def _headers(text):
    return [line.split()[4] for line in text.splitlines() if line.startswith(ATTEMPT_HEADER)]


def test_second_attempt_keeps_the_first_attempts_log(tmp_path):
    log = tmp_path / "logs" / "x.log"
    with pytest.raises(ValueError):
        with rule_context(fake_smk(log)) as logger:
            logger.info("first attempt step 30")
            raise ValueError("killed")
    log.unlink()  # what Snakemake does before the job's next attempt
    with rule_context(fake_smk(log)) as logger:
        print("second attempt output")
    history = attempts_path(log)
    assert history == tmp_path / "logs" / "x.attempts.log"
    text = history.read_text()
    assert _headers(text) == ["1", "2"]
    assert "first attempt step 30" in text and "ValueError: killed" in text
    assert text.index("first attempt") < text.index("attempt 2") < text.index("second attempt output")
    # the declared log holds this attempt, numbered as in the history
    assert _headers(log.read_text()) == ["2"] and "second attempt output" in log.read_text()
