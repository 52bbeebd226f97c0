"""Pure logic: no Dagster imports, no side effects beyond the files a function is handed."""
