"""What renumbering a brought SentencePiece model costs: encode/decode time with nmt's own layout (no renumbering)
against ``spm_train``'s default layout (renumbered), and the id mapping alone, two ways.

    NMT_DATA_DIR=../shared/data .venv/bin/python scripts/bench_vocab.py [--vocab-size 4000] [--repeats 5]

Both models are trained on the Multi30k English training side in a temporary directory. Figures are the best of
``--repeats`` runs, interleaved (A, B, A, B, ...) so that a busy machine affects both alike.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from nmt.data.corpus import data_root, read_lines
from nmt.data.tokenizer import Tokenizer
from nmt.data.vocab import SpmVocab


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def numpy_round_trip(vocab: SpmVocab, ids: list[list[int]]) -> list[list[int]]:
    """The alternative to :meth:`SpmVocab.to_model`: one flat numpy look-up, then split back into lists."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    mapped = vocab._to_model[flat].tolist()
    ends = np.cumsum(lengths).tolist()
    return [mapped[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    lines = list(read_lines(data_root() / "multi30k/train.en.gz"))
    with tempfile.TemporaryDirectory(prefix="nmt-bench-vocab-") as tmp:
        text = Path(tmp) / "train.en"
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        layouts = {"nmt (0..3)": {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3}, "spm_train defaults": {}}
        toks = {}
        for k, (name, flags) in enumerate(layouts.items()):
            prefix = f"{tmp}/m{k}"
            spm.SentencePieceTrainer.train(
                input=str(text), model_prefix=prefix, vocab_size=args.vocab_size, minloglevel=2, **flags
            )
            toks[name] = Tokenizer.load(f"{prefix}.model")
    ids = {name: tok.encode_tgt(lines) for name, tok in toks.items()}
    print(f"{len(lines)} sentences, {sum(map(len, ids['nmt (0..3)']))} pieces, vocab {args.vocab_size}")
    encode = best_of({name: (lambda t=tok: t.encode_tgt(lines)) for name, tok in toks.items()}, args.repeats)
    decode = best_of(
        {name: (lambda t=tok, i=ids[name]: [t.decode_tgt(x) for x in i]) for name, tok in toks.items()}, args.repeats
    )
    for name in toks:
        print(f"{name:>20}: encode {encode[name]:.3f} s, decode {decode[name]:.3f} s ({toks[name].renumbering()})")
    vocab = toks["spm_train defaults"]._tgt
    raw = vocab.sp.encode(lines, out_type=int)
    assert vocab.to_model(raw) == numpy_round_trip(vocab, raw)
    ways = {"lists": lambda: vocab.to_model(raw), "numpy": lambda: numpy_round_trip(vocab, raw)}
    mapping = best_of(ways, args.repeats)
    print(f"id mapping alone: per-id list look-up {mapping['lists']:.3f} s, flat numpy {mapping['numpy']:.3f} s")


if __name__ == "__main__":
    main()
