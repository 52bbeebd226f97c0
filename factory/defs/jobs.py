import dagster as dg

from factory.defs.partitions import dataset_versions

# Every stage for one dataset version: what `factory run` and the demo materialise.
factory_pipeline = dg.define_asset_job(
    "factory_pipeline", selection=dg.AssetSelection.all(), partitions_def=dataset_versions
)

