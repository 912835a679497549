"""itermask.io.workflow.rule_context: the log is appended per attempt, never truncated."""
from types import SimpleNamespace

import pytest

from itermask.io.workflow import ATTEMPT_HEADER, rule_context


def fake_smk(log):
    return SimpleNamespace(threads=1, log=[str(log)], rule="demo_rule", wildcards={"subject": "01"})


def test_second_attempt_keeps_the_first_attempts_log(tmp_path):
    log = tmp_path / "logs" / "x.log"
    with pytest.raises(ValueError):
        with rule_context(fake_smk(log)) as logger:
            logger.info("first attempt step 30")
            raise ValueError("killed")
    with rule_context(fake_smk(log)) as logger:
        print("second attempt output")
    text = log.read_text()
    headers = [line for line in text.splitlines() if line.startswith(ATTEMPT_HEADER)]
    assert [h.split()[4] for h in headers] == ["1", "2"]
    assert "first attempt step 30" in text and "ValueError: killed" in text
    assert text.index("first attempt") < text.index(headers[1]) < text.index("second attempt output")
