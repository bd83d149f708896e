"""The ``savings-gym`` command line.

savings-gym bench env        # environment throughput against MotorNet, with ratios
"""

from __future__ import annotations

import argparse
import json
import platform
import sys


def _bench_env(args: argparse.Namespace) -> int:
    from benchmarks import env_throughput

    comparisons = env_throughput.run(quick=args.quick)
    machine = platform.processor() or platform.machine()
    print(f"# savings-gym bench env  ({machine}, python {platform.python_version()})")
    print(env_throughput.report(comparisons))
    if args.json:
        print(json.dumps([c.as_dict() for c in comparisons], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="savings-gym", description="A testbed for savings in motor learning.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="performance benchmarks (baseline beside ours, same run)")
    which = bench.add_subparsers(dest="what", required=True)
    env = which.add_parser("env", help="environment steps per second vs MotorNet's own stepping")
    env.add_argument("--quick", action="store_true", help="a short smoke run (numbers not for the record)")
    env.add_argument("--json", action="store_true", help="also print the figures as JSON")
    env.set_defaults(handler=_bench_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
