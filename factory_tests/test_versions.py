import pytest

from factory.lib.errors import DataError
from factory.lib.versions import next_version_key, parse_version_key, version_key


def test_keys_round_trip_and_count_per_task():
    assert parse_version_key(version_key("support_email", 3)) == ("support_email", 3)
    assert next_version_key(["support_email.v1", "support_email.v4", "other.v9"], "support_email") == "support_email.v5"
    assert next_version_key([], "banking77") == "banking77.v1"


@pytest.mark.parametrize("bad", ["support_email", "support_email.v0", "Support.v1", "x.v1.v2", ""])
def test_bad_keys_are_refused(bad):
    with pytest.raises(DataError, match="expected '<task>.v<n>'"):
        parse_version_key(bad)
