"""What every `wolfpack` command prints besides its result: JSON documents and progress lines.

Results go to stdout (``emit_json`` for --json); progress on long waits goes to stderr, so that a
script reading stdout sees only the result.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
