"""``nmt-average``: average the weights of several checkpoints into one loadable checkpoint.

nmt-average --inputs runs/x/checkpoints/step_9000.pt runs/x/checkpoints/step_10000.pt --output avg.pt
nmt-average --last runs/x --output avg.pt        # the step checkpoints the run keeps (train.keep_last)
nmt-average --last 5 runs/x --output avg.pt      # the newest 5 (train with train.keep_last=5 or more)
"""

from __future__ import annotations

import argparse
import sys

from nmt.cli.common import new_parser, run_cli, setup_logging
from nmt.errors import NMTError

PROG = "nmt-average"
EPILOG = "checks: every checkpoint exists, loads safely and has the same architecture and parameter shapes."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = new_parser(PROG, __doc__.split("\n")[0].split(": ", 1)[1], EPILOG)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", nargs="+", metavar="CKPT", help="checkpoint files to average")
    source.add_argument(
        "--last",
        nargs="+",
        metavar="RUN_DIR",
        help="the newest N step_*.pt checkpoints of RUN_DIR (or of RUN_DIR/checkpoints); without N, as many as "
        "the run keeps (its train.keep_last, 3 by default)",
    )
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    parser.formatter_class = _Formatter
    args = parser.parse_args(argv)
    if args.last and len(args.last) > 2:
        parser.error(f"--last takes [N] RUN_DIR, got {' '.join(args.last)}")
    return args


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``--last [N] RUN_DIR`` (argparse has no optional-first two-value form)."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        return "[N] RUN_DIR" if action.dest == "last" else super()._format_args(action, default_metavar)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(PROG)
    return run_cli(PROG, lambda: _average(args))


def _average(args: argparse.Namespace) -> int:
    from nmt.training.average import average_to_file, last_checkpoints

    if args.last:
        *n, run_dir = args.last
        if n and (not n[0].isdigit() or int(n[0]) < 1):
            raise NMTError(f"--last needs a positive number of checkpoints, got {n[0]!r}")
        inputs = last_checkpoints(run_dir, int(n[0]) if n else None)
    else:
        inputs = args.inputs
    out = average_to_file(inputs, args.output)
    print(f"averaged {len(inputs)} checkpoints -> {out}", file=sys.stderr)
    for path in inputs:
        print(f"  {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
