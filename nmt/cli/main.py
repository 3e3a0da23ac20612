"""``nmt``: the toolkit's version, its commands, and ``nmt COMMAND ...`` as another way to run each of them.

nmt --version
nmt                      # the commands, one line each
nmt translate -c best.pt < in.de > out.en     # the same as nmt-translate ...
"""

from __future__ import annotations

import importlib
import sys

from nmt import __version__
from nmt.cli.common import EXIT_STATUS_HELP
from nmt.errors import EXIT_USER_ERROR

# command -> (module with main(), one-line description)
COMMANDS = {
    "train": ("nmt.cli.train", "train a model (a Hydra app: key=value overrides, -m for sweeps)"),
    "translate": ("nmt.cli.translate", "translate a file or stdin to stdout, batched and streaming"),
    "evaluate": ("nmt.cli.evaluate", "BLEU/chrF with signatures, BLEU by length, attention dumps, AER"),
    "align": ("nmt.cli.align", "word-align given sentence pairs (forced alignment), AER against gold links"),
    "average": ("nmt.cli.average", "average checkpoints into one loadable checkpoint"),
    "sweep-summary": ("nmt.cli.sweep_summary", "a table and plots of a sweep's jobs"),
    "export": ("nmt.cli.export", "export a checkpoint for deployment (CTranslate2)"),
    "serve": ("nmt.cli.serve", "an HTTP translation service and the attention explorer page"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return (
        f"nmt {__version__}: sequence-to-sequence neural machine translation\n\n"
        f"usage: nmt COMMAND [ARGS ...]   (or nmt-COMMAND [ARGS ...])\n\ncommands:\n{rows}\n\n"
        "nmt COMMAND --help describes a command; nmt --version prints the version.\n\n"
        f"{EXIT_STATUS_HELP}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"nmt {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"nmt: error: unknown command {args[0]!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USER_ERROR
    module = importlib.import_module(COMMANDS[args[0]][0])
    sys.argv = [f"nmt-{args[0]}", *args[1:]]  # the Hydra app (train) reads sys.argv itself
    result = module.main() if args[0] == "train" else module.main(args[1:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
