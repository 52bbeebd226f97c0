import dagster as dg

# One partition per dataset version, keyed `<task>.v<n>`; `factory version new` adds them.
dataset_versions = dg.DynamicPartitionsDefinition(name="dataset_version")
