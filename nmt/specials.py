"""Special token ids and markers: a leaf module, so models, search and data agree without importing each other.

The ids are fixed when a SentencePiece model is trained (``nmt.data.tokenizer``); every model embeds them at these
rows and search forbids PAD and BOS as outputs.
"""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
EOS_PIECE = "</s>"  # the EOS position's label on attention axes (dumps, heatmaps)
WORD_START = "\u2581"  # "▁": SentencePiece's marker at the start of a piece that begins a word
