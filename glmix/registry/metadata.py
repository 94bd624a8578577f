"""What a registry version records about how its model was made, read from a finished flow's output.

The config and its digest, the input paths and dates, the rows read, each shard's feature index
(digest, size and the list itself), the validation metrics of the chosen step, and the code that
made it — what a deployment or an audit asks of a model, and what ``glmix models diff`` compares.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

from glmix import __version__
from glmix.data.feature_index import FeatureIndex
from glmix.deploy.uploads import REPO
from glmix.errors import GlmixError
from glmix.game.config import GameConfig
from glmix.game.plan import GamePlan
from glmix.io.dated import DateRange
from glmix.io.storage import join, storage_for
from glmix.spark.job import read_report

STATS_FILE = "stats.json"              # the window's statistics, in the data gate's output
VERSION_STATS = "data-stats.json"      # the same, kept with a registered version


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> dict[str, str | None]:
    """glmix's version and, in a git checkout, its commit."""
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"glmix": __version__, "commit": done.stdout.strip() if done.returncode == 0 else None}


def flow_metadata(config: GameConfig, run_date: str | None = None) -> tuple[dict[str, Any], dict[str, list[tuple[str, str]]]]:
    """The metadata of the model a finished flow of ``config`` chose, and its shards' feature lists
    (``run_date``: the day a scheduled run trained for, which ``last_days`` inputs count back from)."""
    plan = GamePlan(config)
    storage = storage_for(plan.summary)
    if not storage.exists(plan.summary):
        raise GlmixError(f"{plan.summary}: missing; the flow of {config.name} has not finished (select-best)")
    summary = json.loads(storage.read_bytes(plan.summary))
    best = summary["steps"][summary["best"]]
    shards = sorted(s.name for s in config.feature_shards       # the shards the flow indexed
                    if s.name in {getattr(c, "shard", None) for c in config.coordinates.values()})
    features = {shard: FeatureIndex.load(plan.index(shard)).keys() for shard in shards}
    counters = read_report(plan.index(shards[0])) if shards else {}   # the index job's counts
    raw = config.to_dict()
    inputs = {"train": config.input.train, "validation": config.input.validation,
              "train_dates": _dates(config.input.train_dates), "validation_dates": _dates(config.input.validation_dates),
              "run_date": run_date}
    return {
        "name": config.name, "task": config.task, "config": raw, "config_digest": digest(raw), "inputs": inputs,
        "rows": {"train_read": counters.get("rows_in"), "train_used": counters.get("rows_used")},
        "shards": {s: {"features": len(keys), "digest": digest(keys)} for s, keys in features.items()},
        "metrics": best["metrics"], "primary_metric": summary["primary_metric"],
        "chosen_step": {k: best[k] for k in ("run", "pass", "coordinate")}, "source": join(plan.root, "best"),
        "code": code_version(),
    }, features


def _dates(dates: DateRange | None) -> dict[str, Any] | None:
    return None if dates is None else dict(json.loads(dates.model_dump_json()))


def kept_files(config: GameConfig) -> dict[str, bytes]:
    """The files of a finished flow kept with its version: the data gate's window statistics, the
    reference of the next runs' data gates."""
    path = join(GamePlan(config).data_gate, STATS_FILE)
    storage = storage_for(path)
    return {VERSION_STATS: storage.read_bytes(path)} if config.data_gate and storage.exists(path) else {}
