"""MLflow tracking on the default SQLite store, as several Dagster steps use it at once."""
import multiprocessing

from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker


def _experiment_of_a_step(data_root: str, queue) -> None:
    tracker = MlflowTracker(storage=FactoryStorage(data_root=data_root, cache_root=data_root + "/cache"))
    queue.put(tracker._client_and_experiment()[1])


def test_steps_starting_at_once_on_a_fresh_data_root_share_one_store_and_experiment(tmp_path):
    # Unlocked, all but the first process failed here (3 of 4): each ran the migrations of the new SQLite file.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    steps = [context.Process(target=_experiment_of_a_step, args=(str(tmp_path), queue)) for _ in range(3)]
    for step in steps:
        step.start()
    for step in steps:
        step.join(timeout=300)
    assert [step.exitcode for step in steps] == [0, 0, 0]
    assert len({queue.get(timeout=5) for _ in steps}) == 1
