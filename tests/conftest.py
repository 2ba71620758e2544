import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Before any test module imports TensorFlow: tfcomp turns on the oneDNN convolutions its
# learned codecs need.
import tfcomp  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running; excluded from the default run")
