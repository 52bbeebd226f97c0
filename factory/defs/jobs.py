import dagster as dg

# Every stage for one dataset version: what `factory run`, the demo and the nightly schedule materialise.
factory_pipeline = dg.define_asset_job(
    "factory_pipeline", selection=dg.AssetSelection.groups("dataset", "model")
)

# New request log lines into the task's production log table (the review queue follows through automation).
traffic_intake = dg.define_asset_job(
    "traffic_intake", selection=dg.AssetSelection.assets("production_logs")
)

# A person's edits to the review file into the production eval set and training seeds.
review_intake = dg.define_asset_job(
    "review_intake", selection=dg.AssetSelection.assets("reviewed_examples")
)
