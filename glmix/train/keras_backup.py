"""Keras' BackupAndRestore on storage every node sees, so a restarted attempt resumes on any node.

TensorFlow 2.21 reads and writes local files only (it has no ``hdfs://`` file system), so Keras'
BackupAndRestore can only back up into a local directory, and an attempt that YARN restarts on
another node would start training over. :class:`SharedBackup` keeps BackupAndRestore's directory
local (in a YARN container, a fresh directory in its working directory, on its node's disk) and
mirrors it on storage (HDFS or a local path): before training, every worker copies the last
published backup down (under MultiWorkerMirroredStrategy every worker restores from the chief's
backup); after each epoch the chief publishes its backup with ``publish_atomically`` (a copy beside
it, then a rename and ``_SUCCESS``), so a restore never reads half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from glmix.io.storage import copy_tree, is_published, publish_atomically, storage_for


class SharedBackup:
    """``callbacks()`` go to ``model.fit``; ``clear()`` once the trained model is published."""

    def __init__(self, uri: str, is_chief: bool) -> None:
        self.uri, self.is_chief = uri, is_chief
        in_container = "CONTAINER_ID" in os.environ      # YARN's: the working directory is the container's own
        self.local = tempfile.mkdtemp(prefix="glmix-keras-backup-", dir=os.getcwd() if in_container else None)

    def restore(self) -> None:
        """Copy the last published backup, if any, into the local directory."""
        if is_published(self.uri):
            copy_tree(self.uri, self.local)

    def callbacks(self) -> list[Any]:
        """BackupAndRestore in the local directory, then the chief's publication of it (Keras runs
        callbacks in order, so each epoch is published after it is backed up)."""
        import tf_keras as keras

        backup = self

        class PublishBackup(keras.callbacks.Callback):  # type: ignore[misc]  # tf_keras is untyped
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                if backup.is_chief:
                    with publish_atomically(backup.uri) as tmp:
                        copy_tree(backup.local, tmp)

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                shutil.rmtree(backup.local, ignore_errors=True)   # the storage copy stays until clear()

        return [keras.callbacks.BackupAndRestore(self.local), PublishBackup()]

    def clear(self) -> None:
        """Delete the published backup (the chief, once the trained model is published)."""
        storage_for(self.uri).delete(self.uri)
