"""Dagster metadata for the tables every dataset stage writes."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import pandera.pandas as pa

from factory.lib.schemas import column_schema_fields


def table_metadata(rows: list[dict], schema: type[pa.DataFrameModel], path: Path) -> dict:
    columns = [dg.TableColumn(name, dtype, description=desc) for name, dtype, desc in column_schema_fields(schema)]
    counts = Counter(row["target"] for row in rows)
    return {
        "dagster/row_count": len(rows),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "path": dg.MetadataValue.path(str(path)),
        "targets": dg.MetadataValue.json(dict(sorted(counts.items()))) if len(counts) <= 200 else len(counts),
    }
