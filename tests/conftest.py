pytest_plugins = ["statekeel.testing.plugin"]
