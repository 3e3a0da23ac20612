"""Reading TensorBoard event files in tests: the HParams session-start summaries of a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def hparams_sessions(tensorboard_dir: Path) -> list[dict[str, Any]]:
    """Every HParams session-start summary in the event files of ``tensorboard_dir`` (not its subdirectories), in
    file order, as ``{name: value}``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    found = []
    for path in sorted(tensorboard_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    info = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                    found.append({k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()})
    return found
