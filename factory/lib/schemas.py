"""pandera schemas: the single definition of what each stage's table holds."""
from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series


class ExampleSchema(pa.DataFrameModel):
    """A labelled example as every stage after loading sees it."""

    id: Series[str] = pa.Field(unique=True, description="stable row id; generated rows derive theirs from the parent")
    text: Series[str] = pa.Field(str_length={"min_value": 1}, description="the model's input")
    target: Series[str] = pa.Field(str_length={"min_value": 1}, description="canonical answer under the contract")
    source: Series[str] = pa.Field(description="where the row came from: seed, augment, import, ...")

    class Config:
        strict = False
        coerce = False


class RejectedSchema(pa.DataFrameModel):
    id: Series[str]
    gate: Series[str] = pa.Field(description="the first gate the row failed")
    reason: Series[str] = pa.Field(str_length={"min_value": 1})


class SplitSchema(ExampleSchema):
    split: Series[str] = pa.Field(isin=["train", "validation"])


def frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if columns is not None:
        for column in columns:
            if column not in df:
                df[column] = pd.Series(dtype=str)
    return df


def column_schema_fields(model: type[pa.DataFrameModel]) -> list[tuple[str, str, str]]:
    """(name, dtype, description) of a schema, for Dagster's column-schema metadata."""
    schema = model.to_schema()
    return [(name, str(col.dtype), col.description or "") for name, col in schema.columns.items()]


def accepted_table_problems(accepted: list[dict], rejected: list[dict], expected_input: int,
                            labels: dict | None) -> list[str]:
    """What is wrong with a gate stage's output: schema violations, rows lost or invented, labels left with no row."""
    problems = []
    try:
        ExampleSchema.validate(frame(accepted, ["id", "text", "target", "source"]), lazy=True)
        RejectedSchema.validate(frame(rejected, ["id", "gate", "reason"]), lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems.append(f"schema: {exc.failure_cases.head(5).to_dict('records')}")
    if len(accepted) + len(rejected) != expected_input:
        problems.append(f"accepted {len(accepted)} + rejected {len(rejected)} != input {expected_input}")
    missing = sorted(set(labels or ()) - {row["target"] for row in accepted})
    if missing:
        problems.append(f"labels with no accepted row: {missing}")
    return problems
