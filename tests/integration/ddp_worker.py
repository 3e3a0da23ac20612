"""A few updates of a tiny Transformer on fixed batches: run by ``test_train_ddp.py`` under ``torchrun`` (each rank
takes its share of every update's batches) and in the test process itself (one process takes them all).

    torchrun --standalone --nproc_per_node=2 ddp_worker.py DATA_ROOT CACHE OUT_DIR

Each rank writes ``OUT_DIR/accumulate{a}_rank{r}.pt``: its final weights and the figures of every update.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from nmt.config import (
    DataConfig,
    NMTConfig,
    Schedule,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.data.batching import TokenBatchSampler
from nmt.training import distributed
from nmt.training.trainer import Trainer

UPDATES = 3
ACCUMULATE = (1, 2)  # batches per rank and update


def config(data_root: Path, cache: Path) -> NMTConfig:
    corpus = data_root / "multi30k"
    return NMTConfig(
        data=DataConfig(train=str(corpus / "train"), valid=str(corpus / "val"), cache_dir=str(cache)),
        tokenizer=TokenizerConfig(vocab_size=500),
        # No dropout: ranks draw different dropout masks than one process would.
        model=TransformerConfig(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0),
        train=TrainConfig(
            batch_tokens=512,
            schedule=Schedule.constant,
            warmup_steps=0,
            lr=0.2,
            clip_norm=0.0,
            threads=1,
            num_workers=0,
            heatmap_sentences=0,
            matmul_peak_gflops=1.0,
        ),
        search=SearchConfig(beam_size=1),
    )


def run(data_root: Path, cache: Path, run_dir: Path, *, accumulate: int) -> dict[str, Any]:
    """``UPDATES`` updates; update u uses global batches [u·W·a, (u+1)·W·a) of epoch 0 (W ranks, a = accumulate),
    rank r taking every W-th of them from the r-th: one process with W·a batches per update sees the same union."""
    trainer = Trainer(config(data_root, cache), run_dir)
    try:
        # Plain SGD: the update is lr × gradient, so weights compare gradients, scale included (Adam and clipping
        # would hide a wrong normalisation).
        trainer.updater.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.2)
        data, world, rank = trainer.data.train, trainer.dist.world_size, trainer.dist.rank
        sampler = TokenBatchSampler(data.src_lengths, data.tgt_lengths, batch_tokens=512, seed=1)
        batches = sampler.epoch_batches(0)
        figures = []
        for u in range(UPDATES):
            group = batches[u * world * accumulate : (u + 1) * world * accumulate]
            figures.append(trainer.step([data.batch(indices) for indices in group[rank::world]]))
            trainer.state.step += 1
        return {"weights": trainer.model.state_dict(), "figures": figures}
    finally:
        trainer.close()


def main() -> None:
    data_root, cache, out = (Path(a) for a in sys.argv[1:4])
    for accumulate in ACCUMULATE:
        result = run(data_root, cache, out / f"run{accumulate}", accumulate=accumulate)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        torch.save(result, out / f"accumulate{accumulate}_rank{rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main()
