"""Plumbing shared by the stage scripts: params by dotted name, and HygieErrors as one clear line."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's hygie_lib, also inside `dvc exp` temp copies

from hygie_lib.io import HygieError, one_line_warnings  # noqa: E402


def load_params(*names: str) -> SimpleNamespace:
    """Read `section.KEY` entries (or whole `section`s) from params.yaml into a namespace keyed by KEY.

    A missing key is an error naming it.
    """
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    values = {}
    for name in names:
        section, _, key = name.partition(".")
        keys = [key] if key else list(params.get(section) or [])
        for k in keys or [name]:
            if k not in (params.get(section) or {}):
                raise HygieError(f"params.yaml: missing `{name}`. Restore it from the repository's params.yaml.")
            values[k] = params[section][k]
    return SimpleNamespace(**values)


def run(main) -> None:
    """Run a stage's main(); a HygieError prints `error: ...` and exits 2, with no traceback."""
    one_line_warnings()
    try:
        main()
    except HygieError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
