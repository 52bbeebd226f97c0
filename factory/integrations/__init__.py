"""Side effects behind Dagster resources: files, MLflow, models, embeddings."""
