"""Test set-up: 8 virtual CPU devices for the sharding tests, and ../shared/data access.

XLA_FLAGS must be set before JAX initialises its backend, hence at import time here.
"""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import tempfile  # noqa: E402

# Prepared TFDS datasets go to one scratch directory per session (subprocesses inherit it),
# and one per pytest-xdist worker, so that two workers never prepare a dataset in one place.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER or "LINEAGE_DATA_DIR" not in os.environ:
  os.environ["LINEAGE_DATA_DIR"] = tempfile.mkdtemp(prefix=f"lineage_tfds_{_WORKER or 'main'}_")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("LINEAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
  """../shared/data, or a skip (a failure when LINEAGE_REQUIRE_SHARED_DATA=1, as in CI)."""
  if not SHARED_DATA.is_dir():
    message = (f"needs the real datasets in {SHARED_DATA} (set LINEAGE_SHARED_DATA to "
               "their location)")
    if os.environ.get("LINEAGE_REQUIRE_SHARED_DATA") == "1":
      pytest.fail(message + "; LINEAGE_REQUIRE_SHARED_DATA=1 makes this a failure")
    pytest.skip(message)
  return SHARED_DATA
