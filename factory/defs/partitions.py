import dagster as dg

# One partition per dataset version, keyed `<task>.v<n>`; `factory version new` adds them.
dataset_versions = dg.DynamicPartitionsDefinition(name="dataset_version")

# One partition per task with served traffic; the production log sensor adds them.
served_tasks = dg.DynamicPartitionsDefinition(name="served_task")
