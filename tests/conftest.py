"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per stand-in service."""

pytest_plugins = [
    "tests.fixtures.market_data",
    "tests.fixtures.moto_server",
    "tests.fixtures.bq_emulator",
    "tests.fixtures.airflow_env",
    "tests.fixtures.mock_alpha_vantage",
    "tests.fixtures.slack_catcher",
]
