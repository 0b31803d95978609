"""The test project's one app: a model, tasks (found by autodiscovery), views."""
