"""``nmt-export``: convert a checkpoint for another inference engine (CTranslate2).

Examples::

    nmt-export --checkpoint runs/x/checkpoints/best.pt --format ctranslate2 --output deploy/de-en
    nmt-export -c best.pt --format ctranslate2 --output deploy/de-en-int8 --quantization int8
    nmt-translate --engine ctranslate2 --checkpoint deploy/de-en < test.de > test.en
"""

from __future__ import annotations

import argparse
import sys

from nmt.cli.common import new_parser, run_cli, setup_logging
from nmt.export import QUANTIZATIONS

PROG = "nmt-export"


EPILOG = """\
ctranslate2 (needs the extra: pip install -e '.[ctranslate2]'):
  Transformer checkpoints only (CTranslate2 has no RNN encoder-decoder). OUTPUT becomes a directory with
  everything a deployment needs: model.bin, config.json and the vocabulary (*_vocabulary.json) of CTranslate2,
  source.spm and target.spm (the SentencePiece models; the same file twice for a joint vocabulary) and nmt.json
  (languages, maximum source length, the checkpoint's search settings, versions), which
  nmt-translate --engine ctranslate2 reads. The export appends EOS to sources, starts decoding from BOS and never
  emits PAD or BOS, as nmt does, so a plain ctranslate2.Translator on source.spm pieces behaves the same.

  --quantization stores the weights in that type (int8: about 4x smaller); a translator loaded with
  compute_type "default" then runs in it. Without it the weights stay float32 (CTranslate2 can still quantize
  them when loading, e.g. compute_type "int8").

  Positions: nmt's sinusoids are exported as a table (CTranslate2's built-in ones differ); its rows bound the
  source length (+ EOS) and the output length. Default: 1,024 or what the checkpoint's data.max_len and output
  cap need, if more; for learned positions the model's own table.

checks (each a user error): a readable Transformer checkpoint (not an RNN), an OUTPUT that is absent or empty
(or --force), ctranslate2 installed.
"""


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, "Convert an nmt checkpoint for another inference engine.", EPILOG)
    p.add_argument("--checkpoint", "-c", required=True, metavar="CKPT", help="the nmt checkpoint (.pt)")
    p.add_argument("--format", required=True, choices=["ctranslate2"], help="the target engine")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="the directory to create")
    p.add_argument("--quantization", choices=QUANTIZATIONS, help="weight type of the export (default: float32)")
    p.add_argument("--max-positions", type=int, metavar="N", help="rows of the position table (see below)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists and is not empty")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary or warnings")
    return p


def _export(args: argparse.Namespace) -> int:
    from nmt.export.ctranslate2 import export_ctranslate2

    meta = export_ctranslate2(
        args.checkpoint,
        args.output,
        quantization=args.quantization,
        max_positions=args.max_positions,
        force=args.force,
    )
    if not args.quiet:
        print(
            f"{PROG}: {args.checkpoint} (step {meta['step']}, {meta['src_lang']}->{meta['tgt_lang']}) -> "
            f"{args.output} (CTranslate2 {meta['ctranslate2_version']}, {meta['quantization']} weights, "
            f"{meta['max_positions']} positions)",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: _export(args))


if __name__ == "__main__":
    sys.exit(main())
