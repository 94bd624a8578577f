"""A small Keras model trained with MultiWorkerMirroredStrategy, fault tolerant via BackupAndRestore.

Used by the launcher tests: argv[1] is where the backup is published (on HDFS: a restarted attempt
may run on another node; glmix.train.keras_backup). If
GLMIX_KILL_ME_AT_EPOCH is set, worker 1 of attempt 1 kills itself (SIGKILL) after that epoch, so
the launcher must restart the attempt and training must resume from the backup.
"""

import json
import os
import signal
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras

from glmix.train.keras_backup import SharedBackup

task = json.loads(os.environ["TF_CONFIG"])["task"]
backup = SharedBackup(sys.argv[1], is_chief=task["index"] == 0)   # worker 0 is MWMS's chief here
strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 4)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype="float32") > 0).astype("float32")
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")


class KillSwitch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if (os.environ.get("GLMIX_KILL_ME_AT_EPOCH") == str(epoch) and task["index"] == 1
                and os.environ.get("GLMIX_ATTEMPT") == "1"):
            print(f"worker 1 killing itself after epoch {epoch}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).with_options(options)
backup.restore()
history = model.fit(dataset, epochs=6, verbose=0, callbacks=[*backup.callbacks(), KillSwitch()])
print(f"{task['type']}:{task['index']} trained epochs={len(history.history['loss'])} "
      f"final_loss={history.history['loss'][-1]:.4f}", flush=True)
