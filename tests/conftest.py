import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running; excluded from the default run")
