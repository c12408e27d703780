#!/usr/bin/env python3
"""Write the BigQuery table schemas that Terraform uses, generated from src/storage/schema.py.

There is one schema definition in this project: `src/storage/schema.py`. Terraform cannot read
Python, so this script turns every table into a BigQuery JSON schema file,
`infrastructure/terraform/schemas/<table>.json`, and `main.tf` reads them with `file()`.
The column types and modes come from `src.storage.bigquery_handler.schema_fields`, the same
function the pipeline uses when it creates tables itself, so both paths agree by construction.

A test (tests/integration/test_infrastructure.py) runs `--check`: it fails when someone changes
schema.py and forgets to run this script (or edits a JSON file by hand).

Usage:
    .venv/bin/python scripts/export-bq-schemas.py           # (re)write the JSON files
    .venv/bin/python scripts/export-bq-schemas.py --check   # exit 1 and list stale files
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from src.storage.bigquery_handler import schema_fields
from src.storage.schema import TABLES, Table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "infrastructure" / "terraform" / "schemas"


def bigquery_schema_json(table: Table) -> str:
    """Return a table's BigQuery JSON schema as text (a list of name/type/mode/description).

    Args:
        table: a `schema.Table`.

    Returns:
        Pretty-printed JSON ending with a newline, e.g.
        '[\\n  {\\n    "name": "symbol",\\n    "type": "STRING",\\n    "mode": "REQUIRED"\\n  }, ...'.
        Empty descriptions are left out (BigQuery treats missing and empty the same).
    """
    fields = []
    for field in schema_fields(table):
        entry = field.to_api_repr()
        fields.append({key: value for key, value in entry.items() if value not in (None, "")})
    return json.dumps(fields, indent=2) + "\n"


def expected_schema_files() -> dict[str, str]:
    """Return {file name: JSON text} for every table in schema.TABLES."""
    return {f"{name}.json": bigquery_schema_json(table) for name, table in TABLES.items()}


def write_schema_files(out_dir: Path) -> list[Path]:
    """Write every table's schema file into `out_dir` and delete files of tables that no longer exist.

    Returns:
        The paths written, in table order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = expected_schema_files()
    for old_file in out_dir.glob("*.json"):
        if old_file.name not in expected:
            old_file.unlink()
    written = []
    for file_name, text in expected.items():
        path = out_dir / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schema_files(out_dir: Path) -> list[str]:
    """Compare the files in `out_dir` with what schema.py says they should be.

    Returns:
        One line per problem ('fact_daily_prices.json: differs from schema.py', 'missing',
        'no such table'); an empty list when everything is up to date.
    """
    expected = expected_schema_files()
    problems = []
    for file_name, text in expected.items():
        path = out_dir / file_name
        if not path.is_file():
            problems.append(f"{file_name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{file_name}: differs from src/storage/schema.py")
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in expected:
            problems.append(f"{path.name}: no such table in src/storage/schema.py")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: write the schema files, or with --check report stale ones (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is stale")
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR, help=f"output folder (default {SCHEMA_DIR})")
    args = parser.parse_args(argv)

    if args.check:
        problems = stale_schema_files(args.out)
        if problems:
            print("BigQuery schema files are out of date with src/storage/schema.py:")
            for problem in problems:
                print(f"  {problem}")
            print("Fix: .venv/bin/python scripts/export-bq-schemas.py")
            return 1
        print(f"BigQuery schema files in {args.out} match src/storage/schema.py ({len(TABLES)} tables)")
        return 0

    for path in write_schema_files(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
