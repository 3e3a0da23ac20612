"""``nmt-average``: average the weights of several checkpoints into one loadable checkpoint.

nmt-average --inputs runs/x/checkpoints/step_9000.pt runs/x/checkpoints/step_10000.pt --output avg.pt
nmt-average --last 5 runs/x --output avg.pt
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
        nargs=2,
        metavar=("N", "RUN_DIR"),
        help="the newest N step_*.pt checkpoints of RUN_DIR (or of RUN_DIR/checkpoints)",
    )
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(PROG)
    return run_cli(PROG, lambda: _average(args))


def _average(args: argparse.Namespace) -> int:
    from nmt.training.average import average_to_file, last_checkpoints

    if args.last:
        n, run_dir = args.last
        if not n.isdigit() or int(n) < 1:
            raise NMTError(f"--last needs a positive number of checkpoints, got {n!r}")
        inputs = last_checkpoints(run_dir, int(n))
    else:
        inputs = args.inputs
    out = average_to_file(inputs, args.output)
    print(f"averaged {len(inputs)} checkpoints -> {out}", file=sys.stderr)
    for path in inputs:
        print(f"  {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
