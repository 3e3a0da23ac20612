"""Exporting trained models to other inference engines.

:mod:`nmt.export.ctranslate2` converts a Transformer checkpoint into a self-contained CTranslate2 model directory
(``nmt-export --format ctranslate2``); :mod:`nmt.export.ct2_translate` translates with such a directory through the
same line-by-line contract as :class:`nmt.translate.Translator` (``nmt-translate --engine ctranslate2``).
Both need the optional ``ctranslate2`` package (the ``ctranslate2`` extra: ``pip install -e '.[ctranslate2]'``).
"""

# CTranslate2's weight types (``ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES``); here, so that ``--help`` does
# not import torch or ctranslate2.
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
