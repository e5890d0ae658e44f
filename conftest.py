"""pytest configuration shared by the unit tests and the notebook checks (`pytest --nbval labs/`)."""


def pytest_collectstart(collector):
    # Notebook cells are compared on stdout and results only: stderr carries progress bars and
    # library warnings that differ between machines.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
