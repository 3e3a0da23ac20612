#!/usr/bin/env bash
# The main job end to end on the embedded default: Multi30k German->English, a small Transformer,
# a few translated sentences and the test BLEU. `make demo` runs this inside .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=${RUN:-runs/demo}
export NMT_DATA_DIR=${NMT_DATA_DIR:-data}

echo "== training on Multi30k de->en (data root: $NMT_DATA_DIR, run directory: $RUN)"
"$BIN/nmt-train" +experiment=demo hydra.run.dir="$RUN" "$@"

echo "== translating the first 5 test sentences with $RUN/checkpoints/best.pt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN/python" -c "import gzip,sys; f=gzip.open(sys.argv[1],'rt',encoding='utf-8'); [sys.stdout.write(next(f)) for _ in range(5)]" \
  "$NMT_DATA_DIR/multi30k/test_2016_flickr.de.gz" > "$tmp/src.de"
"$BIN/nmt-translate" --checkpoint "$RUN/checkpoints/best.pt" --beam-size 5 < "$tmp/src.de" > "$tmp/hyp.en"
paste -d '\n' <(sed 's/^/  de: /' "$tmp/src.de") <(sed 's/^/  en: /' "$tmp/hyp.en")

echo "== test BLEU (best checkpoint; see $RUN/results.json)"
"$BIN/python" - "$RUN/results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
for t in results["test"]:
    print(f"  {t['name']}: BLEU {t['bleu']:.2f}  chrF {t['chrf']:.2f}  ({t['bleu_signature']})")
PY
