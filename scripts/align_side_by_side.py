"""Word alignment side by side: eflomal and nmt's methods, trained on the same data, scored on the RWTH de-en gold set.

    .venv/bin/python scripts/align_side_by_side.py [--work-dir runs/align_side_by_side] [--steps 2000]
        [--guided-steps N] [--models fwd,rev,guided,guided_rev] [--no-guided-shift] [--guided-weight 1.0]
        [--max-train-lines N] [--skip prepare,eflomal,train] [--train-override KEY=VALUE ...]

Every step is a command printed before it runs (copy it to redo one step by hand):

1. prepare  the training corpus in WORK/data: Multi30k train de-en, the IWSLT14 train sample and the 508 gold pairs
            (without their links, last, as unsupervised aligners are evaluated), all lowercased and punctuation
            split like the gold set (Multi30k with a small regex tokenizer; IWSLT14 is already Moses-tokenized, only
            its XML escapes are undone; the gold pairs are kept token for token). Multi30k val (the first
            --valid-lines) is the dev set, for the BLEU that nmt-train reports; alignment does not use it.
2. eflomal  scripts/eflomal_align.py on that corpus -> WORK/eflomal/train.{fwd,rev,gdfa}; their last 508 lines
            are scored with ``nmt-align --score``.
3. train    nmt-train, in bf16: a de->en Transformer and an en->de one (for bidir), --steps updates each, and
            two guided ones, --guided-steps updates each: de->en on eflomal's grow-diag-final-and links
            (train.alignment.file=WORK/eflomal/train.gdfa) and en->de on the same links reversed. By default
            they supervise the steps that receive each target piece (train.alignment.shift=true), which fits the
            links far better than the predicting steps in the same number of updates (AER 40.5 against 60.1
            after 1,000 updates). --models retrains only some of them; the others keep their run directories.
4. align    nmt-align on the gold pairs (lowercased like training): --pick-layer on the de->en model names the best
            layer for attention and for shift (picked on the gold set itself: an optimistic choice, stated in the
            table), then bidir (shift at that layer, grow-diag-final-and), the guided de->en model with no flags
            (its own layer, head and rows) and both guided models symmetrised (bidir, grow-diag-final-and).
5. table    one Markdown table (method, AER, precision, recall, updates, wall times) and WORK/results.json.

Wall time of a method = everything it needs from the raw corpus: eflomal's run; training (both directions for
bidir; eflomal + training for guided, both guided trainings for guided bidir) plus aligning the gold set.
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts (nmt-train, nmt-align)
STAGES = ("prepare", "eflomal", "train", "align")
MODELS = ("fwd", "rev", "guided", "guided_rev")
# A number with decimal points or commas, a word with inner hyphens, an English clitic after a word ('s, n't is
# split as Moses does: "doesn 't"), or any other non-space character alone.
TOKEN = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:-\w+)*|(?<=\w)'\w+|[^\w\s]")


def tokenize(line: str) -> str:
    """Lowercase and split punctuation like the gold set: ``Two young, White men.`` -> ``two young , white men .``"""
    return " ".join(TOKEN.findall(line.lower()))


def read_gz(path: Path, limit: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit is not None else lines


def write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def default_data_root() -> Path:
    for candidate in (os.environ.get("NMT_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "align-de-en" / "deen.talp.gz").exists():
            return Path(candidate)
    return REPO / "data"


# --------------------------------------------------------------------------------------------- 1. prepare
def prepare(data_root: Path, out: Path, max_train_lines: int | None = None, valid_lines: int = 500) -> dict:
    """Write ``out/train.{de,en}.gz`` and ``out/valid.{de,en}.gz``; return the line counts of each part.

    ``max_train_lines`` caps the Multi30k + IWSLT14 part (for smoke runs); the gold pairs always come last. The dev
    set (the first ``valid_lines`` of Multi30k val) only reports BLEU: alignment does not use it.
    """
    m30k = [read_gz(data_root / "multi30k" / f"train.{lang}.gz") for lang in ("de", "en")]
    iwslt = [read_gz(data_root / "iwslt14-de-en" / f"train_sample.{lang}.gz") for lang in ("de", "en")]
    gold = [read_gz(data_root / "align-de-en" / f"deen.{lang}.gz") for lang in ("de", "en")]
    de = [tokenize(s) for s in m30k[0]] + [html.unescape(s) for s in iwslt[0]]
    en = [tokenize(s) for s in m30k[1]] + [html.unescape(s) for s in iwslt[1]]
    if max_train_lines is not None:
        de, en = de[:max_train_lines], en[:max_train_lines]
    de += [s.lower() for s in gold[0]]
    en += [s.lower() for s in gold[1]]
    write_gz(out / "train.de.gz", de)
    write_gz(out / "train.en.gz", en)
    for lang in ("de", "en"):
        valid = read_gz(data_root / "multi30k" / f"val.{lang}.gz", valid_lines)
        write_gz(out / f"valid.{lang}.gz", [tokenize(s) for s in valid])
    info = {
        "train": len(de),
        "multi30k": min(len(m30k[0]), len(de) - len(gold[0])),
        "iwslt14_sample": max(0, len(de) - len(gold[0]) - len(m30k[0])),
        "gold": len(gold[0]),
        "gold_start": len(de) - len(gold[0]) + 1,
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# --------------------------------------------------------------------------------------------- commands
def run(cmd: list[str], log: Path) -> float:
    """Run one step (printed first, output appended to ``log``); return its wall time; stop the script on failure."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
        sys.exit(f"step failed (exit {proc.returncode}, see {log}):\n{tail}")
    print(f"  ({seconds:.1f} s)", flush=True)
    return seconds


def train_command(
    work: Path, name: str, src: str, tgt: str, args: argparse.Namespace, extra: list[str], steps: int
) -> list[str]:
    return [
        str(BIN / "nmt-train"),
        "data=parallel",
        f"data.train={work / 'data' / 'train'}",
        f"data.valid={work / 'data' / 'valid'}",
        "data.test=[]",
        f"data.src_lang={src}",
        f"data.tgt_lang={tgt}",
        "data.max_len=256",  # keep the long Europarl gold pairs in training
        f"data.cache_dir={work / 'cache'}",
        "model.dropout=0.3",
        "train.lr=1e-3",
        f"train.warmup_steps={max(1, min(1000, steps // 2))}",
        f"train.max_steps={steps}",
        f"train.eval_every={steps}",
        f"train.save_every={steps}",
        "train.precision=bf16",
        "search.beam_size=1",  # the closing dev BLEU is not what this is about: greedy is enough
        f"name={name}",
        f"hydra.run.dir={work / name}",
        *extra,
        *args.train_override,
    ]


def reverse_links(path: Path, out: Path) -> None:
    """Pharaoh ``i-j`` -> ``j-i`` on every line: the source->target links as target->source training labels."""
    lines = path.read_text(encoding="utf-8").splitlines()
    flipped = (" ".join("-".join(link.split("-")[::-1]) for link in line.split()) for line in lines)
    out.write_text("".join(line + "\n" for line in flipped), encoding="utf-8")


def updates(work: Path) -> dict[str, int]:
    """Updates each trained model ran (its results.json), by run name."""
    done = {}
    for name in MODELS:
        path = work / name / "results.json"
        if path.exists():
            done[name] = int(json.loads(path.read_text())["steps"])
    return done


def checkpoint(run_dir: Path) -> Path:
    best = run_dir / "checkpoints" / "best.pt"
    return best if best.exists() else run_dir / "checkpoints" / "last.pt"


# --------------------------------------------------------------------------------------------- 5. table
def format_table(rows: list[dict]) -> str:
    """Markdown: method, AER, precision, recall (in %), updates, total / training / aligning wall time (s)."""
    out = [
        "| method | AER | precision | recall | updates | wall time (s) | training (s) | aligning (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [f"{100 * r[k]:.1f}" for k in ("aer", "precision", "recall")] + [r.get("updates", "–")]
        times = [f"{r[k]:.0f}" if r.get(k) is not None else "–" for k in ("wall", "train", "align")]
        out.append(f"| {r['method']} | " + " | ".join(cells + times) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=REPO / "runs" / "align_side_by_side", help="all outputs")
    p.add_argument("--data-dir", type=Path, default=default_data_root(), help="holds multi30k/, iwslt14-de-en/, ...")
    p.add_argument("--steps", type=int, default=2000, help="updates per model (default 2000)")
    p.add_argument("--max-train-lines", type=int, help="cap the Multi30k + IWSLT14 part (smoke runs)")
    p.add_argument("--valid-lines", type=int, default=500, help="Multi30k val lines used as dev set (default 500)")
    p.add_argument("--guided-steps", type=int, help="updates per guided model (default: --steps)")
    p.add_argument("--guided-weight", type=float, default=1.0, help="train.alignment.weight (default 1.0)")
    p.add_argument(
        "--guided-shift",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="supervise the steps receiving each target piece (train.alignment.shift; default: yes)",
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"models stage 3 trains (default {','.join(MODELS)})")
    p.add_argument("--skip", default="", help=f"comma-separated stages already done: {','.join(STAGES)}")
    p.add_argument("--train-override", action="append", default=[], metavar="K=V", help="extra nmt-train override")
    p.add_argument("--align-threads", type=int, default=0, help="nmt-align --threads (0 = torch's default)")
    args = p.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STAGES):
        p.error(f"--skip: unknown stages {sorted(skip - set(STAGES))}; choose from {', '.join(STAGES)}")
    to_train = [m for m in args.models.split(",") if m]
    if set(to_train) - set(MODELS):
        p.error(f"--models: unknown {sorted(set(to_train) - set(MODELS))}; choose from {', '.join(MODELS)}")
    work = args.work_dir.resolve()
    data, log, times_path = work / "data", work / "commands.log", work / "times.json"
    gold = {k: args.data_dir / "align-de-en" / f"deen.{k}.gz" for k in ("de", "en", "talp")}
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.exists() else {}

    def timed(key: str, cmd: list[str]) -> None:
        times[key] = run(cmd, log)
        times_path.write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")

    if "prepare" not in skip:
        print(f"# 1. training corpus -> {data}", flush=True)
        print(json.dumps(prepare(args.data_dir, data, args.max_train_lines, args.valid_lines)), flush=True)
    info = json.loads((data / "info.json").read_text())
    eflomal_prefix = work / "eflomal" / "train"
    if "eflomal" not in skip:
        print("# 2. eflomal", flush=True)
        cmd = [sys.executable, str(REPO / "scripts" / "eflomal_align.py"), "--src", str(data / "train.de.gz")]
        cmd += ["--tgt", str(data / "train.en.gz"), "--output-prefix", str(eflomal_prefix)]
        timed("eflomal", [*cmd, "--gold", str(gold["talp"]), "--gold-base", "1"])
        for suffix in ("fwd", "rev", "gdfa"):  # the gold pairs' lines, for nmt-align --score
            lines = Path(f"{eflomal_prefix}.{suffix}").read_text(encoding="utf-8").splitlines()
            Path(f"{eflomal_prefix}.gold.{suffix}").write_text("\n".join(lines[-info["gold"] :]) + "\n")
    guided_steps = args.guided_steps or args.steps
    models = {"fwd": ("de", "en", [], args.steps), "rev": ("en", "de", [], args.steps)}
    for name, (src, tgt), links in (("guided", ("de", "en"), "gdfa"), ("guided_rev", ("en", "de"), "gdfa.reversed")):
        extra = [f"train.alignment.file={eflomal_prefix}.{links}", f"train.alignment.weight={args.guided_weight}"]
        models[name] = (src, tgt, [*extra, f"train.alignment.shift={str(args.guided_shift).lower()}"], guided_steps)
    if "train" not in skip:
        reverse_links(Path(f"{eflomal_prefix}.gdfa"), Path(f"{eflomal_prefix}.gdfa.reversed"))
        for name in to_train:
            src, tgt, extra, steps = models[name]
            print(f"# 3. training {name} ({src}->{tgt}, {steps} updates)", flush=True)
            timed(f"train_{name}", train_command(work, name, src, tgt, args, extra, steps))
    nmt_align = [str(BIN / "nmt-align"), "--src", str(gold["de"]), "--tgt", str(gold["en"]), "--lowercase"]
    nmt_align += ["--gold", str(gold["talp"]), "--gold-base", "1", "--threads", str(args.align_threads)]
    reports = work / "reports"
    if "align" not in skip:
        print("# 4. aligning the gold pairs", flush=True)
        for suffix in ("fwd", "rev", "gdfa"):
            hyp = f"{eflomal_prefix}.gold.{suffix}"
            score = [str(BIN / "nmt-align"), "--score", hyp, "--gold", str(gold["talp"]), "--gold-base", "1"]
            run([*score, "--report", str(reports / f"eflomal_{suffix}.json")], log)
        fwd = str(checkpoint(work / "fwd"))
        timed("pick", [*nmt_align, "-c", fwd, "--pick-layer", "--report", str(reports / "pick.json")])
        pick = json.loads((reports / "pick.json").read_text())["results"]
        best = {m: min((r for r in pick if r["method"] == m), key=lambda r: r["aer"]) for m in ("attention", "shift")}
        for m in ("attention", "shift"):
            layer = ["--alignment-layer", str(best[m]["layer"])] if best[m]["layer"] is not None else []
            out = ["-o", str(reports / f"{m}.align"), "--report", str(reports / f"{m}.json")]
            timed(f"align_{m}", [*nmt_align, "-c", fwd, "--method", m, *layer, *out])
        layer = ["--alignment-layer", str(best["shift"]["layer"])] if best["shift"]["layer"] is not None else []
        rev = ["--reverse-checkpoint", str(checkpoint(work / "rev")), "--method", "bidir", *layer]
        out = ["-o", str(reports / "bidir.align"), "--report", str(reports / "bidir.json")]
        timed("align_bidir", [*nmt_align, "-c", fwd, *rev, *out])
        out = ["-o", str(reports / "guided.align"), "--report", str(reports / "guided.json")]
        timed("align_guided", [*nmt_align, "-c", str(checkpoint(work / "guided")), *out])
        if (work / "guided_rev" / "checkpoints").is_dir():
            base = "shift" if models["guided"][2][-1].endswith("true") else "attention"
            rev = ["--reverse-checkpoint", str(checkpoint(work / "guided_rev")), "--method", "bidir"]
            out = ["-o", str(reports / "guided_bidir.align"), "--report", str(reports / "guided_bidir.json")]
            cmd = [*nmt_align, "-c", str(checkpoint(work / "guided")), *rev, "--bidir-base", base, *out]
            timed("align_guided_bidir", cmd)
            # Intersection keeps only links both directions agree on: on this gold set the guided heads' best.
            out = ["-o", str(reports / "guided_inter.align"), "--report", str(reports / "guided_inter.json")]
            timed("align_guided_inter", [*cmd[:-4], "--symmetrize", "intersection", *out])
    rows = collect(reports, times, info, updates(work))
    print(f"\n# 5. AER on the {info['gold']} RWTH de-en gold pairs ({info['train']:,} training pairs)")
    print(format_table(rows))
    result = {"steps": args.steps, "guided_steps": guided_steps, "corpus": info, "rows": rows, "times": times}
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {work / 'results.json'}; every command is in {log}")
    return 0


def collect(reports: Path, times: dict[str, float], info: dict, steps: dict[str, int] | None = None) -> list[dict]:
    """One row per method from the reports of stage 4, the wall times of every step (missing ones: None) and the
    updates of the models each method used (``steps``: by run name)."""
    t, steps = times.get, steps or {}

    def add(*parts: float | None) -> float | None:
        return None if any(x is None for x in parts) else sum(x for x in parts if x is not None)

    def ran(*names: str) -> str:
        return " + ".join(f"{steps[n]:,}" for n in names) if all(n in steps for n in names) else "–"

    eflomal, train_fwd, train_guided = t("eflomal"), t("train_fwd"), add(t("eflomal"), t("train_guided"))
    specs = [  # label, report, training time, aligning time, models
        ("eflomal forward", "eflomal_fwd", None, eflomal, ()),
        ("eflomal reverse", "eflomal_rev", None, eflomal, ()),
        ("eflomal grow-diag-final-and", "eflomal_gdfa", None, eflomal, ()),
        ("attention", "attention", train_fwd, t("align_attention"), ("fwd",)),
        ("shift", "shift", train_fwd, t("align_shift"), ("fwd",)),
        (
            "bidir (shift, grow-diag-final-and)",
            "bidir",
            add(train_fwd, t("train_rev")),
            t("align_bidir"),
            ("fwd", "rev"),
        ),
        ("guided (eflomal gdfa)", "guided", train_guided, t("align_guided"), ("guided",)),
        (
            "guided bidir (grow-diag-final-and)",
            "guided_bidir",
            add(train_guided, t("train_guided_rev")),
            t("align_guided_bidir"),
            ("guided", "guided_rev"),
        ),
        (
            "guided bidir (intersection)",
            "guided_inter",
            add(train_guided, t("train_guided_rev")),
            t("align_guided_inter"),
            ("guided", "guided_rev"),
        ),
    ]
    rows = []
    for label, report, train, align, models in specs:
        path = reports / f"{report}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        if report in ("attention", "shift") and r.get("layer") is not None:
            label += f" (layer {r['layer']}, best on the gold set)"
        if report == "guided":
            label = label[:-1] + f", {r.get('method') or 'attention'})"
        wall = align if train is None else add(train, align)
        row = {"method": label, "wall": wall, "train": train, "align": align, "layer": r.get("layer")}
        row["updates"] = ran(*models) if models else "–"
        rows.append({**row, "heads": r.get("heads"), **{k: r[k] for k in ("aer", "precision", "recall")}})
    return rows


if __name__ == "__main__":
    sys.exit(main())
