"""The pipeline CLI's messages for the mistakes a new user makes: bad dates, --help, no API key.

Argument errors are checked through the real parser (argparse exits 2 and prints to stderr);
the missing-key cases run `pipeline.main` on a real SQLite file with the file source.
"""

from __future__ import annotations

import argparse

import pytest

from src import pipeline


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-13-01", "month 13 is not a month (01-12)"),
        ("2024-00-10", "month 00 is not a month (01-12)"),
        ("2024-02-30", "day 30 is not in February 2024 (it has 29 days)"),
        ("2023-04-31", "day 31 is not in April 2023 (it has 30 days)"),
        ("2024/01/02", "expected YYYY-MM-DD, e.g. 2024-01-02"),
        ("yesterday", "expected YYYY-MM-DD, e.g. 2024-01-02"),
    ],
)
def test_a_bad_date_says_what_is_wrong_with_it(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        pipeline.parse_date(text)
    assert message in str(raised.value)
    assert repr(text) in str(raised.value)


def test_a_good_date_parses():
    from datetime import date

    assert pipeline.parse_date("2024-02-29") == date(2024, 2, 29)


def test_month_13_on_the_command_line_exits_2_naming_the_argument_and_the_month(capsys):
    with pytest.raises(SystemExit) as raised:
        pipeline.main(["run", "--start", "2024-13-01", "--end", "2024-12-31"])
    assert raised.value.code == pipeline.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "argument --start: '2024-13-01': month 13 is not a month (01-12)" in err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_shows_an_example_and_the_exit_codes(capsys, argv):
    with pytest.raises(SystemExit) as raised:
        pipeline.main(argv)
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert "Example:" in out
    assert "python -m src.pipeline run --symbols AAPL,MSFT --start 2024-01-02 --end 2024-03-28" in out
    assert "Exit codes:" in out
    for line in ("0  every symbol loaded", "1  some symbols failed", "2  bad arguments or configuration"):
        assert line in out


@pytest.fixture
def no_key_env(tmp_path, monkeypatch):
    """No Alpha Vantage key, Alpha Vantage first in DATA_SOURCES, a CSV folder as the next source."""
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / "IBM.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,160,162,159,161,1000\n2024-01-03,161,163,160,162,1100\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "missing.env"))
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "warehouse.db"))
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FILE_SOURCE_DIR", str(folder))
    monkeypatch.setenv("DATA_SOURCES", "alpha_vantage,file")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")
    monkeypatch.delenv("S3_BUCKET", raising=False)
    monkeypatch.delenv("ALPHA_VANTAGE_API_KEY", raising=False)
    return tmp_path


@pytest.mark.integration
def test_source_auto_without_a_key_warns_once_and_uses_the_next_source(no_key_env, capsys):
    code = pipeline.main(["run", "--no-progress", "--symbols", "IBM", "--start", "2024-01-02", "--end", "2024-01-03"])

    assert code == pipeline.EXIT_OK
    captured = capsys.readouterr()
    warning = "warning: ALPHA_VANTAGE_API_KEY is not set: skipping alpha_vantage, using file (DATA_SOURCES order)"
    assert captured.err.count(warning) == 1
    assert captured.err.count("ALPHA_VANTAGE_API_KEY") == 1
    assert "from file" in captured.out


@pytest.mark.integration
def test_source_alpha_vantage_without_a_key_exits_2_saying_what_to_do(no_key_env, capsys):
    code = pipeline.main(
        ["run", "--no-progress", "--symbols", "IBM", "--source", "alpha_vantage", "--start", "2024-01-02",
         "--end", "2024-01-03"]
    )  # fmt: skip

    assert code == pipeline.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: --source alpha_vantage needs ALPHA_VANTAGE_API_KEY, which is not set.")
    assert "https://www.alphavantage.co/support/#api-key" in err
    assert "--source auto" in err
    assert not (no_key_env / "warehouse.db").exists()  # refused before anything was opened
