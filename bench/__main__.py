"""Benchmarks: `python -m bench <name> [options]` runs bench/<name>.py's main(argv).

`python -m bench` alone lists them. Each benchmark builds its own data in its
own program, through the bulk paths, and prints its figures.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _names() -> list[str]:
    """The benchmarks: modules with a main(argv), found in their text without importing them
    (helpers such as common.py or the do-nothing null_app.py are not listed)."""
    here = Path(__file__).resolve().parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_")
        and "\ndef main(" in (here / f"{m.name}.py").read_text(encoding="utf-8")
    )


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    names = _names()  # not imported here: one broken benchmark must not stop the others
    if not argv or argv[0] not in names:
        print("usage: python -m bench <name> [options]; benchmarks: " + ", ".join(names))
        return 0 if not argv else 2
    return int(importlib.import_module(f"bench.{argv[0]}").main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
