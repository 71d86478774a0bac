"""The CLI prints each warning as one line, and a warning said twice in one run once."""

from __future__ import annotations

import pytest

from eoshard.flows.cli import _show_warning


def test_a_warning_said_twice_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        _show_warning(UserWarning("3 of 7 parcels of test_cli_warnings were repaired"), UserWarning, "a.py", 1)
    _show_warning(UserWarning("another text of test_cli_warnings"), UserWarning, "b.py", 2)
    err = capsys.readouterr().err
    assert err.count("warning: 3 of 7 parcels of test_cli_warnings were repaired\n") == 1, err
    assert err.count("warning: another text of test_cli_warnings\n") == 1, err
