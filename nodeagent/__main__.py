"""``python -m nodeagent --cluster-dir DIR --node NAME``: one cluster node as an OS process.

Theory of operation
-------------------
Parses the arguments, loads ``DIR/cluster.toml`` and runs ``runtime.node.serve_node`` under
``trio.run`` with real UDP sockets, file-backed disks, the control socket and SIGTERM/SIGINT handling.
Human log lines go to stderr (the launcher redirects it to ``nodes/NAME/node.log``); the event log is
``nodes/NAME/events.jsonl``.

Exit codes (CONTRACT.md): 0 clean stop; 2 bad arguments (argparse) or a configuration error (one line
on stderr); 3 one of the node's addresses is in use (one line naming it); 1 anything else (a bug: the
traceback is in the log).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from nodeagent.errors import ConfigError, WolfpackError
from nodeagent.runtime.node import NodeOptions, serve_node
from nodeagent.runtime.transport import AddressInUse

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ADDRESS_IN_USE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nodeagent", description="Run one wolfpack cluster node (an emulated MSCS node)."
    )
    parser.add_argument(
        "--cluster-dir", required=True, type=Path, help="the cluster directory (has cluster.toml)"
    )
    parser.add_argument("--node", required=True, help="this node's name, e.g. NODE1")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _single(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on bad arguments
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cluster_dir: Path = args.cluster_dir.resolve()
    options = NodeOptions(handle_signals=True)
    try:
        trio.run(functools.partial(serve_node, cluster_dir, args.node, options))
    except BaseException as raw:
        exc = _single(raw)
        if isinstance(exc, ConfigError):
            print(f"nodeagent: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(exc, AddressInUse):
            print(f"nodeagent: {exc}", file=sys.stderr)
            return EXIT_ADDRESS_IN_USE
        if isinstance(exc, WolfpackError):
            print(f"nodeagent: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_OK
        logging.getLogger("nodeagent").exception("node failed", exc_info=raw)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
