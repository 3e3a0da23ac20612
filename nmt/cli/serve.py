"""``nmt-serve``: serve one checkpoint over HTTP (translation, alignment, the attention explorer page).

Examples::

    nmt-serve --checkpoint runs/x/checkpoints/best.pt            # http://127.0.0.1:8000/ (the page), /docs
    curl -s localhost:8000/translate -H 'Content-Type: application/json' -d '{"sentences": ["Ein Hund rennt."]}'
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nmt.cli.common import add_running_flags, new_parser, resolve_device, run_cli, setup_logging
from nmt.errors import NMTError

PROG = "nmt-serve"

EPILOG = """\
endpoints:
  POST /translate  {"sentences": [...], "beam_size"?, "nbest"?, "lenpen"?, "alignments"?, "attention"?,
                   "alignment_threshold"?} -> {"translations": [{"text", "score", "hypotheses": [...]}, ...]}
  POST /align      {"src": [...], "tgt": [...], "method"?, "threshold"?} -> {"alignments": [{"alignment", "links"}]}
  POST /explore    {"sentence": "...", "beam_size"?} -> every layer's and head's attention (the page's data)
  GET  /health     the model, the limits, batching counters
  GET  /           the attention explorer page;  /docs, /openapi.json: the API (the /docs page loads Swagger UI
                   from a CDN; /openapi.json is local)

batching:
  Requests that arrive within --batch-wait-ms of each other and have the same options are translated as one batch,
  up to --max-batch-tokens source tokens, in one worker thread; search runs exactly as nmt-translate's, so a
  sentence gets the same translation whatever it is batched with.

errors:
  JSON {"error": "..."} naming the field: 400 not JSON, 413 over --max-body-bytes or --max-request-sentences,
  422 wrong types, unknown fields, values out of range, a sentence over --max-sentence-pieces.

stopping: Ctrl-C or SIGTERM shuts the server down cleanly, with exit status 0 (not 128+N as below); flags and
the checkpoint are checked before it listens.
"""


def build_parser() -> argparse.ArgumentParser:
    from nmt.serve.service import Limits

    d = Limits()
    p = new_parser(
        PROG, "Serve an nmt checkpoint over HTTP: translation, alignment and an attention explorer page.", EPILOG
    )
    p.add_argument("--checkpoint", "-c", required=True, metavar="CKPT", help="the model to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    lim = p.add_argument_group("limits and batching")
    for f in dataclasses.fields(Limits):  # one flag per field, its help from the field's metadata
        default = None if f.name == "max_sentence_pieces" else getattr(d, f.name)
        shown = "the checkpoint's data.max_len, where nmt-translate truncates" if default is None else "%(default)s"
        lim.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(getattr(d, f.name)),
            default=default,
            metavar="MS" if f.name.endswith("_ms") else "N",
            help=f"{f.metadata['help']} (default: {shown})",
        )
    r = p.add_argument_group("running")
    add_running_flags(r)
    r.add_argument("--access-log", action="store_true", help="log every request")
    r.add_argument("--quiet", "-q", action="store_true", help="log errors only")
    return p


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from nmt.serve.app import create_app
    except ImportError as e:
        raise NMTError(f"nmt-serve needs the serve extra: pip install -e '.[serve]' in the checkout ({e})") from None
    import torch

    import nmt
    from nmt.serve.batcher import model_thread
    from nmt.serve.service import Limits, Service

    if not 0 <= args.port < 65536:
        raise NMTError(f"--port must be in 0..65535, got {args.port}")

    def load() -> nmt.Model:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        return nmt.load(args.checkpoint, device=resolve_device(args.device), precision=args.precision)

    worker = model_thread()  # all torch work in one thread: see model_thread
    model = worker.submit(load).result()
    try:
        limits = Limits(
            max_request_sentences=args.max_request_sentences,
            max_sentence_pieces=args.max_sentence_pieces or model.max_source_len,
            max_sentence_chars=args.max_sentence_chars,
            max_body_bytes=args.max_body_bytes,
            max_batch_tokens=args.max_batch_tokens,
            batch_wait_ms=args.batch_wait_ms,
        )
    except ValueError as e:
        raise NMTError(f"--{str(e).replace('_', '-')}") from None
    app = create_app(Service(model, limits, name=Path(args.checkpoint).name, executor=worker))
    if not args.quiet:
        print(f"{PROG}: {model!r} on http://{args.host}:{args.port}/ (page), /docs (API)", file=sys.stderr)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="error" if args.quiet else "info",
        access_log=args.access_log,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: _serve(args))


if __name__ == "__main__":
    sys.exit(main())
