"""Fetching public corpora whose files are absent, verified by sha256 and written atomically.

``data.download=multi30k`` makes :func:`ensure_download` fetch ``<data root>/multi30k/{split}.{lang}.gz`` from
the official release (GitHub ``multi30k/dataset``, ``data/task1/raw/``) when neither the plain nor the gzipped
file is there. A file is written to a temporary name beside its target and renamed only once its checksum
matches, so an interrupted or corrupted download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nmt.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicCorpus:
    """A corpus that can be downloaded: ``{base_url}{split}.{lang}.gz`` -> ``<root>/{directory}/``."""

    directory: str
    base_url: str
    splits: tuple[str, ...]
    sha256: dict[str, str]  # file name -> sha256 of its bytes

    @property
    def languages(self) -> list[str]:
        return sorted({name.split(".")[-2] for name in self.sha256})


MULTI30K = PublicCorpus(
    directory="multi30k",
    base_url="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/",
    splits=("train", "val", "test_2016_flickr"),
    sha256={
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
        "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    },
)

CORPORA: dict[str, PublicCorpus] = {"multi30k": MULTI30K}


def ensure_download(name: str, langs: list[str], root: Path, *, timeout: float = 60.0) -> list[Path]:
    """Download the files of public corpus ``name`` for ``langs`` that are not under ``root`` yet.

    A file counts as present in plain or gzipped form (``train.de`` or ``train.de.gz``); present files are
    used as they are (they may be the user's own copies).

    Returns:
        The files downloaded now (empty when everything was there).

    Raises:
        DataError: unknown corpus or language, a failed download (the message names ``NMT_DATA_DIR``), or a
            checksum mismatch.
    """
    if name not in CORPORA:
        raise DataError(f"data.download={name!r} is not a known corpus; known: {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    missing_langs = [lang for lang in langs if lang not in corpus.languages]
    if missing_langs:
        raise DataError(
            f"{name} has no language {', '.join(missing_langs)} to download; it has {', '.join(corpus.languages)}"
        )
    directory = root / corpus.directory
    fetched = []
    for split in corpus.splits:
        for lang in langs:
            target = directory / f"{split}.{lang}.gz"
            if target.is_file() or target.with_suffix("").is_file():
                continue
            download_file(corpus.base_url + target.name, target, corpus.sha256[target.name], root=root, timeout=timeout)
            fetched.append(target)
    return fetched


def download_file(url: str, target: Path, sha256: str, *, root: Path, timeout: float = 60.0) -> None:
    """Fetch ``url`` into ``target`` if its bytes hash to ``sha256``; atomic (temporary file, then rename).

    Raises:
        DataError: the download failed (offline, HTTP error) or the checksum does not match.
    """
    log.info("downloading %s -> %s", url, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise DataError(
            f"cannot write the download of {url} into {target.parent} ({e.strerror or e}); set NMT_DATA_DIR to a "
            f"writable directory (the data root is now {root})"
        ) from None
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 16):
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", None) or e
                raise DataError(
                    f"cannot download {url} ({reason}); this machine may have no internet access. Put the file at "
                    f"{target} by hand, or set NMT_DATA_DIR to a directory that already holds "
                    f"{target.parent.name}/{target.name} (the data root is now {root})"
                ) from None
        if h.hexdigest() != sha256:
            raise DataError(
                f"checksum mismatch for {url}: sha256 {h.hexdigest()}, expected {sha256}; the file was not saved "
                "(a proxy error page or a changed release?)"
            )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("downloaded %s (sha256 verified)", target)
