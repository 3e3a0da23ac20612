"""The test-set report: translate whole sets, score them, and write one ``results.json`` schema.

Used by ``nmt-train`` (its final report on the dev and test sets with the best checkpoint) and by
``nmt-evaluate`` (any checkpoint, any set). For each set: the best hypothesis of every source line (written to a
``.hyp`` file), corpus BLEU and chrF with their sacrebleu signatures, BLEU by source length, and on request the
attention dumps and the AER against gold word alignments.

``results.json``, the same for both tools::

    {"format": "nmt-results-1", "search": {...}, "dev": SET | null, "test": [SET, ...], ...the tool's own keys}
    SET = {"name", "files", "sentences", "bleu", "chrf", "bleu_signature", "chrf_signature",
           "bleu_precisions", "bleu_bp", "bleu_ratio", "bleu_hyp_len", "bleu_ref_len",   (sacrebleu's BLEU report)
           "buckets": [{"lo", "hi", "label", "sentences", "bleu", "bleu_low", "bleu_high"}, ...],
           "hypotheses", "decode_seconds",
           "alignment": {"method", "aer", "precision", "recall", "sentences", "of", ...} (only with gold alignments)}

``buckets`` is BLEU by source length with 95% bootstrap intervals (:func:`nmt.evaluate.bleu_by_length`, the same
buckets in every tool). ``alignment`` scores forced alignments of every (source, reference) pair against the gold
links (``"method": "forced (shift)"``, or ``"forced (attention)"`` for a model trained on those rows).

``hypotheses`` is relative to the directory of ``results.json``. ``nmt-train`` adds the run's facts (model,
parameters, steps, wall time, throughput, ...), ``nmt-evaluate`` the checkpoints it read.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nmt.analysis.alignment import GoldAlignment, aer, check_gold_ranges, format_pharaoh, read_pharaoh
from nmt.analysis.attention import AttentionRecord, plot_heatmap, save_attention
from nmt.analysis.forced import ForcedAligner
from nmt.config import NMTConfig
from nmt.data.corpus import data_root, load_hf, load_parallel, open_hf, read_lines
from nmt.errors import DataError, NMTError
from nmt.evaluate import BUCKET_WIDTH, LAST_BUCKET, Bucket, Scores, bleu_by_length, score
from nmt.specials import EOS_PIECE
from nmt.translate import Translation, Translator

RESULTS_FORMAT = "nmt-results-1"


@dataclass
class TestSet:
    """Sentences to translate and their references (line-aligned); ``files`` says where they came from."""

    name: str
    sources: list[str]
    references: list[str]
    files: list[str] = field(default_factory=list)


@dataclass
class SetReport:
    """The scores of one translated set (see the module docstring for its JSON form)."""

    name: str
    files: list[str]
    scores: Scores
    buckets: list[Bucket]
    hypotheses: list[str]
    hypotheses_file: str
    decode_seconds: float
    alignment: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "files": self.files,
            "sentences": len(self.hypotheses),
            **self.scores.as_dict(),
            "buckets": [{**asdict(b), "label": b.label} for b in self.buckets],
            "hypotheses": self.hypotheses_file,
            "decode_seconds": round(self.decode_seconds, 2),
        }
        if self.alignment is not None:
            out["alignment"] = self.alignment
        return out


# --------------------------------------------------------------------------------------------- loading sets
def set_name(path: str) -> str:
    """``test_2016_flickr.de.gz`` -> ``test_2016_flickr``."""
    return re.sub(r"(\.[A-Za-z]{2,3})?(\.gz)?$", "", Path(path).name) or "test"


def load_test_sets(
    cfg: NMTConfig, *, src: str | None = None, ref: str | None = None, data_dir: str | Path | None = None
) -> list[TestSet]:
    """``src``/``ref`` files as one set, else the test sets of ``cfg`` (files under the data root, or splits of
    its Hugging Face corpus).

    Raises:
        NMTError: only one of ``src``/``ref``, or no set at all. DataError: unreadable or mismatched files.
    """
    if (src is None) != (ref is None):
        raise NMTError("give both --src and --ref, or neither (then the checkpoint's test sets are used)")
    if src is not None and ref is not None:
        sources, references = list(read_lines(src)), list(read_lines(ref))
        if len(sources) != len(references):
            raise DataError(f"{src} has {len(sources)} lines but {ref} has {len(references)}")
        return [_scorable(TestSet(set_name(src), sources, references, [src, ref]))]
    root = Path(data_dir) if data_dir else None
    if cfg.data.hf.path:
        dd = open_hf(cfg.data.hf, root or data_root())
        sets = [
            load_hf(dd, s, cfg.data.src_lang, cfg.data.tgt_lang, description=cfg.data.hf.path) for s in cfg.data.test
        ]
    elif cfg.data.test:
        sets = [load_parallel(prefix, cfg.data.src_lang, cfg.data.tgt_lang, root) for prefix in cfg.data.test]
    else:
        raise NMTError("no --src/--ref given, and the checkpoint's config names no test sets (data.test)")
    return [_scorable(TestSet(p.name, p.src, p.tgt, [str(f) for f in p.files if f])) for p in sets]


def _scorable(data: TestSet) -> TestSet:
    """``data`` if it has a pair to score; a BLEU of nothing would look like a score."""
    if any(s.strip() and r.strip() for s, r in zip(data.sources, data.references)):
        return data
    what = "no lines" if not data.sources else f"{len(data.sources)} lines, none with text on both sides"
    raise DataError(f"test set {data.name} ({', '.join(data.files)}) has {what}: there is nothing to score")


# --------------------------------------------------------------------------------------------- one set
def report_set(
    translator: Translator,
    data: TestSet,
    *,
    hypotheses_file: Path,
    relative_to: Path,
    tokenize: str | None = None,
    lowercase: bool = False,
    dump_dir: Path | None = None,
    heatmaps: int = 0,
    gold: str | None = None,
    gold_base: int = 1,
    progress: Callable[[int], None] | None = None,
    bucket_width: int = BUCKET_WIDTH,
    last_bucket: int = LAST_BUCKET,
) -> SetReport:
    """Translate ``data`` (best hypotheses, in order), write them to ``hypotheses_file`` and score them.

    Args:
        translator: the model, tokenizer and search settings (attention kept when dumps are asked for).
        relative_to: the directory ``results.json`` goes to (``hypotheses`` is written relative to it).
        tokenize, lowercase: sacrebleu's BLEU tokenizer and case-insensitive scoring.
        dump_dir, heatmaps: attention ``.npz``, Pharaoh alignments and the first ``heatmaps`` heatmaps.
        gold, gold_base: gold word alignments of ``data`` for the AER (``i-j`` sure / ``ipj`` possible links).
        progress: called with the number of sentences translated after each batch (a progress bar's update).
        bucket_width, last_bucket: the source-length buckets (the defaults are every tool's).
    """
    gold_links = read_gold(gold, gold_base, data) if gold else None  # checked before the set is translated
    start = time.perf_counter()
    translations = translator.translate(data.sources, progress=progress)
    seconds = time.perf_counter() - start
    hyps = [t.texts[0] for t in translations]
    write_lines(hypotheses_file, hyps)
    options = {"tokenize": tokenize, "lowercase": lowercase}
    scores = score(hyps, data.references, **options)
    buckets = bleu_by_length(data.sources, hyps, data.references, width=bucket_width, last=last_bucket, **options)
    if dump_dir is not None:
        dump(translator, translations, data.name, dump_dir, heatmaps)
    alignment = gold_aer(translator, data, gold_links) if gold_links is not None else None
    return SetReport(
        name=data.name,
        files=list(data.files),
        scores=scores,
        buckets=buckets,
        hypotheses=hyps,
        hypotheses_file=_relative(hypotheses_file, relative_to),
        decode_seconds=seconds,
        alignment=alignment,
    )


def dump(translator: Translator, translations: list[Translation], name: str, dump_dir: Path, heatmaps: int) -> None:
    """Attention .npz, Pharaoh alignments and the first heatmaps of one set."""
    tok, records = translator.tokenizer, []
    for t in translations:
        h = t.hypotheses[0]
        src = [*tok.src_pieces(t.src_ids), EOS_PIECE]
        tgt = [*tok.tgt_pieces(h.tokens), EOS_PIECE]
        records.append(AttentionRecord(t.line - 1, h.attention.numpy(), src, tgt))
    save_attention(dump_dir / f"{name}.attention.npz", records)
    links = [translator.word_alignment(t) for t in translations]
    write_lines(dump_dir / f"{name}.align", [format_pharaoh(x) for x in links])
    for r, x in zip(records[:heatmaps], links):
        path = dump_dir / f"{name}.heatmaps" / f"{r.id + 1:05d}.png"
        plot_heatmap(r, path, title=f"{name}, line {r.id + 1}", links=x)


def read_gold(path: str, base: int, data: TestSet) -> list[GoldAlignment]:
    """The gold word alignments of ``data``: one line per pair, every link within the words of its source line and
    reference (a file read with the wrong ``base`` is caught here, with the other base suggested)."""
    gold = read_pharaoh(path, base=base)
    if len(gold) != len(data.sources):
        raise DataError(f"{path} has {len(gold)} lines but the test set has {len(data.sources)} sentences")
    words = [(len(src.split()), len(ref.split())) for src, ref in zip(data.sources, data.references)]
    check_gold_ranges(gold, words, path=path, base=base)
    return gold


def gold_aer(translator: Translator, data: TestSet, gold: list[GoldAlignment]) -> dict[str, Any]:
    """AER of the model's forced alignments of every (source, reference) pair against the gold links.

    The gold links describe the given pair, not the model's translation, so the reference is teacher-forced
    through the translator's model (:mod:`nmt.analysis.forced`, as ``nmt-align`` does, with its default method and
    the translator's alignment layer and heads): every gold sentence counts, whatever the model translates.
    """
    aligner, method = ForcedAligner.for_model(
        translator.model,
        translator.tokenizer,
        translator.config,
        device=translator.device,
        batch_tokens=translator.cfg.batch_tokens,
    )
    links = [a.links for a in aligner.align(data.sources, data.references, method)]
    return {
        "method": f"forced ({method.value})",
        **aer(links, gold).as_dict(),
        "of": len(gold),
        "layer": aligner.layer,
        "heads": aligner.heads,
        "note": "the references teacher-forced through the model (nmt-align's forced alignment), every pair scored",
    }


# --------------------------------------------------------------------------------------------- files
def results_document(
    *, search: dict[str, Any], dev: SetReport | None, test: list[SetReport], **facts: Any
) -> dict[str, Any]:
    """The ``results.json`` object: the tool's facts, then the search settings and the sets' reports."""
    return {
        "format": RESULTS_FORMAT,
        **facts,
        "search": search,
        "dev": dev.as_dict() if dev is not None else None,
        "test": [t.as_dict() for t in test],
    }


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write atomically (a temporary file, then a rename): a reader such as a sweep summary never sees half a file,
    so a ``results.json`` that does not parse is damaged, not still being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_lines(path: Path, lines: list[str]) -> None:
    """One line per string (newlines inside a string become spaces, so line counts always match)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines), encoding="utf-8")


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
