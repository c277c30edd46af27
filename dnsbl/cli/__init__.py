"""The `dnsbl` command: one entry point, a sub-command per operation.

Each sub-command group lives in its own module with a `register(subparsers)` function; this
module only parses the common options, loads the configuration, and turns errors into one
clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dnsbl.cli import accesskeys, apikeys, database, listings, rbldnsd, relay, run, traps
from dnsbl.config import LOG_LEVELS
from dnsbl.errors import DnsblError
from dnsbl.logs import configure_logging, one_line

# The modules that register sub-commands, in the order `--help` lists them.
_COMMAND_MODULES = (run, database, listings, rbldnsd, relay, traps, apikeys, accesskeys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnsbl", description="A private DNSBL server.")
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="TOML configuration file (default: $DNSBL_CONFIG)"
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default: log.level)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from dnsbl.cli.context import Context

        context = Context.from_args(args)
        log = context.settings.log
        configure_logging(args.log_level or log.level, log.format)
        result = args.handler(context, args)
    except DnsblError as exc:
        print(f"dnsbl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from dnsbl.db import is_unavailable  # SQLAlchemy, only on this path

        if not is_unavailable(exc):
            raise
        print(f"dnsbl: the database is unavailable: {one_line(exc)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
