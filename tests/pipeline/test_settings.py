"""The ``EOSHARD_*`` tuning variables: their values read, and a value that is not one named with what it should be."""

from __future__ import annotations

import pytest

from eoshard.pipeline import settings
from eoshard.pipeline.errors import SettingError
from eoshard.pipeline.settings import check_settings, env_choice, env_count, env_megabytes, is_set

NAME = "EOSHARD_TEST_SETTING"


@pytest.fixture(autouse=True)
def _fresh_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_invalid", {})


@pytest.mark.parametrize(("raw", "expected"), [(None, 8), ("", 8), (" 3 ", 3), ("0", 0), ("64", 64)])
def test_a_count_is_its_whole_number_or_the_default(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                                    expected: int) -> None:  # fmt: skip
    if raw is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, raw)
    assert env_count(NAME, 8) == expected
    assert is_set(NAME) == bool(raw and raw.strip())
    check_settings()  # nothing noted


@pytest.mark.parametrize("raw", ["eight", "2.5", "-1", "1e3"])
def test_a_count_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(NAME, raw)
    assert env_count(NAME, 8, minimum=0) == 8  # the default meanwhile: a module reads it at import
    with pytest.raises(SettingError) as err:
        check_settings()
    assert str(err.value).startswith(f"the environment variable {NAME} is {raw!r}, which is not a whole number of "
                                     "at least 0: set it to one (its default is 8) or unset it")  # fmt: skip


def test_a_count_below_its_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "0")
    env_count(NAME, 8, minimum=1)
    with pytest.raises(SettingError, match="is '0', which is not a whole number of at least 1"):
        check_settings()


@pytest.mark.parametrize(("raw", "expected"), [(None, 1024 << 20), ("0", 0), ("0.5", 1 << 19), ("4096", 4 << 30)])
def test_a_size_is_read_in_mebibytes(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int) -> None:
    if raw is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, raw)
    assert env_megabytes(NAME, 1024) == expected


@pytest.mark.parametrize("raw", ["1 GB", "-1", "nan", "inf"])
def test_a_size_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(NAME, raw)
    assert env_megabytes(NAME, 1024) == 1024 << 20
    with pytest.raises(
        SettingError, match=f"is {raw!r}, which is not a size in MiB, 0 or more .* default is 1024"
    ):
        check_settings()


def test_a_choice_is_one_of_its_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "all")
    assert env_choice(NAME, "shared", ("shared", "all")) == "all"
    check_settings()
    monkeypatch.setenv(NAME, "ALL")
    assert env_choice(NAME, "shared", ("shared", "all")) == "shared"
    with pytest.raises(SettingError, match="is 'ALL', which is not 'shared' or 'all': set it to one \\(its default "
                                           "is 'shared'\\)"):  # fmt: skip
        check_settings()
