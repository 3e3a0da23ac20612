"""One SentencePiece model seen through the model's fixed special ids (pad 0, unk 1, bos 2, eos 3).

Models trained by nmt already have that layout. A model trained elsewhere usually does not: plain ``spm_train``
gives unk 0, bos 1, eos 2 and no pad; T5-style models have pad 0, eos 1, unk 2 and no bos. Rather than refuse
them, :class:`SpmVocab` renumbers: the four specials take model ids 0..3 (a special the SentencePiece model lacks
gets a slot of its own there), and every other piece keeps its order from id 4 on. The renumbering is a pure
function of the model bytes, so a checkpoint that stores the bytes restores the same ids; a model that already
has the layout maps to itself and costs nothing at encode or decode time.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sentencepiece as spm

from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID

SPECIAL_IDS = frozenset((PAD_ID, BOS_ID, EOS_ID))  # dropped when decoding; UNK stays visible as " ⁇ "
SLOT_PIECES = ("<pad>", "<unk>", "<s>", "</s>")  # piece names of specials the SentencePiece model lacks
ADOPT_FLAGS = "--pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3"  # spm_train flags for a model that needs no mapping


class SpmVocab:
    """A SentencePiece processor whose ids are renumbered so that the specials are 0..3.

    Args:
        sp: the loaded SentencePiece processor.

    Attributes:
        sp: the processor.
        size: ids the model sees: the SentencePiece pieces plus one slot per missing pad/bos/eos.
        identity: True when the model already has the specials at 0..3 (no renumbering).
        spm_ids: the SentencePiece (pad, unk, bos, eos) ids, -1 for absent ones.
    """

    def __init__(self, sp: spm.SentencePieceProcessor) -> None:
        self.sp = sp
        self.spm_ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
        n = sp.get_piece_size()
        self.identity = self.spm_ids == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
        present = np.array([i for i in self.spm_ids if i >= 0], dtype=np.int64)
        others = np.setdiff1d(np.arange(n, dtype=np.int64), present)  # every other piece, in SentencePiece order
        # model id -> SentencePiece id (-1: a slot for a special the SentencePiece model lacks)
        self._to_spm = np.concatenate([np.array(self.spm_ids, dtype=np.int64), others])
        self.size = len(self._to_spm)
        # SentencePiece id -> model id
        self._to_model = np.empty(n, dtype=np.int64)
        real = np.flatnonzero(self._to_spm >= 0)
        self._to_model[self._to_spm[real]] = real
        self._to_spm_list = self._to_spm.tolist()  # encoding and decoding work on Python lists
        self._to_model_list = self._to_model.tolist()

    def encode(self, texts: list[str], **kwargs: object) -> list[list[int]]:
        """Sentences -> model ids (no specials); ``kwargs`` go to ``SentencePieceProcessor.encode``."""
        ids = self.sp.encode(texts, out_type=int, **kwargs)
        return ids if self.identity else self.to_model(ids)

    def to_model(self, ids: list[list[int]]) -> list[list[int]]:
        """SentencePiece id lists -> model id lists, by a look-up in a Python list per id.

        SentencePiece returns Python lists and callers want lists: mapping them in place is about twice as fast
        as a round trip through one flat numpy array (``scripts/bench_vocab.py``).
        """
        get = self._to_model_list.__getitem__
        return [list(map(get, s)) for s in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Model ids -> detokenized text; pad/bos/eos (and slots, which are only those) are dropped."""
        to_spm = self._to_spm_list
        return self.sp.decode([to_spm[i] for i in map(int, ids) if i not in SPECIAL_IDS])

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Model ids -> piece strings (a slot shows the usual name of its special)."""
        to_spm = self._to_spm_list
        return [self.sp.id_to_piece(s) if (s := to_spm[i]) >= 0 else SLOT_PIECES[i] for i in map(int, ids)]

    def describe(self) -> str:
        """How the SentencePiece ids were renumbered, for logs: ``""`` when they were not."""
        if self.identity:
            return ""
        names = ("pad", "unk", "bos", "eos")
        moved = ", ".join(
            f"{name} {i}->{new}" if i >= 0 else f"{name} (absent)->{new}"
            for new, (name, i) in enumerate(zip(names, self.spm_ids))
        )
        return f"specials renumbered ({moved}), other pieces from 4 on; {self.size} ids"
