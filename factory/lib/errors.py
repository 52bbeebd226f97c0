from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: names the file, the line (1-based) and the field, and says what to do."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
