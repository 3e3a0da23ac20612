"""The shared trained model really learned something: its test BLEU is far above a random model's (0)."""

from __future__ import annotations

import json


def test_the_trained_checkpoint_translates_better_than_chance(trained_checkpoint):
    results = json.loads((trained_checkpoint.parents[1] / "results.json").read_text(encoding="utf-8"))
    assert results["steps"] == 300
    assert results["test"][0]["bleu"] > 3.0
