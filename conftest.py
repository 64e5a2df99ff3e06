"""pytest settings that must hold wherever pytest is started from."""

from pathlib import Path

SANITIZE_FILE = Path(__file__).parent / "tests" / "nbval_sanitize.cfg"


def pytest_configure(config):
    # nbval resolves --nbval-sanitize-with against the working directory; point it at our file
    # unless the caller chose another one.
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(SANITIZE_FILE)
