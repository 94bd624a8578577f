"""Deep fixed effect: a Keras model over the prepared fixed-effect data, trained by one or several
workers with MultiWorkerMirroredStrategy (TF_CONFIG from the launcher), GDMix style.

    python -m glmix.train.keras_fixed_effect --index IDX --train FE --validation FE_VALID --output MODEL \
        --task logistic [--model glmix.train.keras_models:wide_and_deep] [--model-args '{"hidden": [64, 32]}'] \
        [--optimizer adam|adagrad|rmsprop|sgd] [--learning-rate 0.003] [--epochs 5] [--steps-per-epoch N] \
        [--batch-size 512] [--offsets SCORES [SCORES ...]]

Each worker loads its share of the rows (glmix.data.sparse_rows), pads them into ``indices`` /
``values`` matrices and feeds ``model(indices, values) + offset`` to the task's pointwise loss
(logistic, squared, Poisson) with the row weights. Progress is backed up every epoch with Keras'
BackupAndRestore and published to storage beside the output (glmix.train.keras_backup; keyed by
the output, the data and the config), so a restarted attempt resumes where the last one stopped,
on whichever node it runs.

Output (published atomically by the chief): saved_model/ (the user model: inputs indices and
values, output the margin), scores/train/ and scores/validation/ (Parquet uid, score: the same
form as the GLM fixed effect, so random effects and scoring use them unchanged), _shard.json,
_report.json (epochs, losses, examples per second, input vs compute time).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from glmix.data.feature_index import FeatureIndex
from glmix.data.sparse_rows import SparseRows, load_rows, total_rows
from glmix.errors import ConfigError, GlmixError
from glmix.glm.losses import Loss
from glmix.io.scores import offsets_for, write_scores
from glmix.io.storage import copy_tree, join, storage_for
from glmix.settings import SHARD_META, Settings, Task
from glmix.stage_args import StageArgs
from glmix.train.fixed_effect import Collective, WorkerContext, publish_directory, sibling_dir
from glmix.train.keras_backup import SharedBackup


class KerasConfig(Settings):
    task: Task
    model: str = Field("glmix.train.keras_models:wide_and_deep", pattern=r"^[\w.]+:\w+$",
                       description="module:function building the Keras model")
    model_args: dict[str, Any] = {}
    optimizer: Literal["adam", "adagrad", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(0.003, gt=0)
    batch_size: int = Field(512, ge=1, description="rows per worker per step")
    epochs: int = Field(5, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the smallest worker share")
    seed: int = Field(0, description="initial weights and shuffling; the same on every worker")
    model_id: str = "global"


def padded(rows: SparseRows) -> tuple[np.ndarray, np.ndarray]:
    """The rows' features as dense [rows, max nnz] index and value matrices (padding has value 0)."""
    counts = np.diff(rows.indptr)
    width = max(1, int(counts.max(initial=0)))
    indices = np.zeros((rows.rows, width), dtype=np.int32)
    values = np.zeros((rows.rows, width), dtype=np.float32)
    row_of = rows.row_ids()
    column = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], counts)
    indices[row_of, column] = rows.indices
    values[row_of, column] = rows.values
    return indices, values


def build_model(config: KerasConfig, num_features: int) -> Any:
    module, _, function = config.model.partition(":")
    try:
        builder = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model: cannot load {config.model}: {exc}") from None
    return builder(num_features, **config.model_args)


def pointwise_loss(task: Task) -> Callable[[Any, Any], Any]:
    """Sum-free per-row loss of the margin (offset included), for Keras' weighted averaging."""
    import tensorflow as tf

    pointwise = Loss(task)

    def loss(y: Any, margin: Any) -> Any:
        return pointwise.tf_value(tf.reshape(tf.cast(y, margin.dtype), tf.shape(margin)), margin)

    return loss


class KerasTrainer:
    def __init__(self, config: KerasConfig, index: str, train: str, output: str, validation: str | None = None,
                 offsets: list[str] | None = None, offsets_exclude: str | None = None,
                 backup_dir: str | None = None) -> None:
        self.config, self.train_uri, self.output, self.validation_uri = config, train, output, validation
        self.offsets, self.offsets_exclude = offsets, offsets_exclude
        self.index = FeatureIndex.load(index)
        self.context = WorkerContext.from_environment()
        self.tmp = sibling_dir(output, f"._tmp-{self.context.run_id}-")
        key = hashlib.sha256(json.dumps([output, train, config.model_dump()], sort_keys=True).encode()).hexdigest()
        self.backup = SharedBackup(backup_dir or sibling_dir(output, f"._keras-backup-{key[:16]}-"),
                                   self.context.is_chief)

    def _inputs(self, rows: SparseRows) -> dict[str, np.ndarray]:
        indices, values = padded(rows)
        return {"indices": indices, "values": values}

    def run(self) -> dict[str, Any]:
        import tensorflow as tf
        import tf_keras as keras

        c, started = self.config, time.monotonic()
        keras.utils.set_random_seed(c.seed)
        strategy = (tf.distribute.MultiWorkerMirroredStrategy() if self.context.count > 1
                    else tf.distribute.get_strategy())
        collective = Collective(self.context, strategy if self.context.count > 1 else None)
        rows = load_rows(self.train_uri, self.context.index, self.context.count)
        if self.offsets:
            rows.offset = rows.offset + offsets_for(rows.uid, self.offsets, self.offsets_exclude)
        train_features = self._inputs(rows)   # padded once: for training and for the training scores
        inputs = {**train_features, "offset": rows.offset.astype(np.float32)}
        input_seconds = time.monotonic() - started
        # every worker takes the same number of steps: the smallest share decides
        steps = c.steps_per_epoch or max(1, (total_rows(self.train_uri) // self.context.count) // c.batch_size)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = (tf.data.Dataset.from_tensor_slices((inputs, rows.label.astype(np.float32),
                                                       rows.weight.astype(np.float32)))
                   .shuffle(min(rows.rows, 100_000), seed=c.seed + self.context.index).repeat()
                   .batch(c.batch_size * self.context.count).with_options(options).prefetch(2))
        with strategy.scope():
            model = build_model(c, self.index.size)
            features = {"indices": keras.Input((None,), dtype="int32", name="indices"),
                        "values": keras.Input((None,), dtype="float32", name="values")}
            offset = keras.Input((), dtype="float32", name="offset")
            full = keras.Model({**features, "offset": offset}, model(features) + tf.expand_dims(offset, -1))
            full.compile(optimizer=keras.optimizers.get({"class_name": c.optimizer,
                                                          "config": {"learning_rate": c.learning_rate}}),
                         loss=pointwise_loss(c.task))
        self.backup.restore()
        fit_started = time.monotonic()
        history = full.fit(dataset, epochs=c.epochs, steps_per_epoch=steps, verbose=2 if self.context.is_chief else 0,
                           callbacks=self.backup.callbacks())
        fit_seconds = time.monotonic() - fit_started
        examples = steps * c.epochs * c.batch_size * self.context.count
        score_started = time.monotonic()
        write_scores(join(self.tmp, "scores", "train", f"part-{self.context.index:05d}.parquet"), rows.uid,
                     self._margins(model, train_features))
        if self.validation_uri:
            part = load_rows(self.validation_uri, self.context.index, self.context.count)
            write_scores(join(self.tmp, "scores", "validation", f"part-{self.context.index:05d}.parquet"), part.uid,
                         self._margins(model, self._inputs(part)))
        collective.barrier()
        report = {"model_id": c.model_id, "task": c.task, "workers": self.context.count, "epochs_run":
                  len(history.history.get("loss", [])), "loss_by_epoch": history.history.get("loss", []),
                  "steps_per_epoch": steps, "examples_trained": examples,
                  "examples_per_second": examples / max(fit_seconds, 1e-9), "input_seconds": input_seconds,
                  "fit_seconds": fit_seconds, "score_seconds": time.monotonic() - score_started,
                  "wall_seconds": time.monotonic() - started, "config": c.model_dump(),
                  "num_features": self.index.size, "rows_this_worker": rows.rows}
        if self.context.is_chief:
            self._publish(model, report)
        return report

    @staticmethod
    def _margins(model: Any, features: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
        """The model's margin for every one of this worker's rows, computed here. Not
        ``model.predict``: under MultiWorkerMirroredStrategy it splits each batch across the workers'
        replicas and, for a row count the split leaves uneven, dropped a row (811 rows gave 810)."""
        rows = len(features["indices"])
        margins = np.zeros(rows)
        for start in range(0, rows, batch):
            part = {name: values[start:start + batch] for name, values in features.items()}
            margins[start:start + batch] = np.asarray(model(part, training=False), dtype=np.float64).reshape(-1)
        return margins

    def _publish(self, model: Any, report: dict[str, Any]) -> None:
        local = tempfile.mkdtemp(prefix="glmix-saved-model-")
        try:
            model.save(local, save_format="tf")
            copy_tree(local, join(self.tmp, "saved_model"))
        finally:
            shutil.rmtree(local, ignore_errors=True)
        storage = storage_for(self.tmp)
        storage.write_bytes(join(self.tmp, SHARD_META), storage.read_bytes(join(self.train_uri, SHARD_META)))
        storage.write_bytes(join(self.tmp, "_report.json"), json.dumps(report, indent=2, default=float).encode())
        publish_directory(self.tmp, self.output)
        self.backup.clear()


class KerasArgs(StageArgs, KerasConfig):
    """The trainer's command line: the config's keys as flags, plus the data and output paths."""

    PROG: ClassVar[str] = "glmix.train.keras_fixed_effect"

    index: str
    train: str
    validation: str | None = None
    output: str
    offsets: list[str] | None = None
    offsets_exclude: str | None = None
    backup_dir: str | None = Field(None, description="where epochs are backed up, on storage every node sees "
                                                     "(default: beside the output)")

    def config(self) -> KerasConfig:
        return KerasConfig.model_validate(self.model_dump(include=set(KerasConfig.model_fields)))


def main(argv: list[str] | None = None) -> int:
    try:
        args = KerasArgs.from_argv(argv, __doc__)
        report = KerasTrainer(args.config(), args.index, args.train, args.output, args.validation, args.offsets,
                              args.offsets_exclude, args.backup_dir).run()
    except GlmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: report[k] for k in ("epochs_run", "examples_per_second", "input_seconds", "fit_seconds",
                                             "workers")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
