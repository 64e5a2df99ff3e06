"""The course's import surface: every public name the chapters build, under the book's names.

    from shared import SimpleTokenizerV2, GPTDatasetV1, create_dataloader_v1

Each name is written once, in its chapter's notebook, and exported to that chapter's module
(``ch02_tokenizer/tokenizer.py``, ...). ``shared/names.py`` (generated) says which module holds which
name; this package imports a module only when one of its names is asked for. That keeps
``import shared`` light, and lets chapter modules import the plain helper modules here
(``shared.data``, ``shared.device``) without an import cycle.
"""

from importlib import import_module

from shared.names import NAMES

__all__ = sorted(NAMES)


def __getattr__(name: str):
    module = NAMES.get(name)
    if module is None:
        raise AttributeError(
            f"module 'shared' has no attribute {name!r}: no chapter exports it "
            "(the names are listed in shared/names.py)"
        )
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(NAMES))
