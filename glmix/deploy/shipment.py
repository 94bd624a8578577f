"""What a cluster needs to run glmix's stages when no node has glmix installed, as spark-submit and
launcher options: Spark's jars (``spark.yarn.archive``), the packed Python environments (localized
by YARN as ``./glmix-env`` in Spark's containers, without TensorFlow, and as ``./pyenv`` in the
launcher's, with TensorFlow only when the flow's trainers need it) and glmix's code (on the Python path of the driver and the executors, and ``./code``
in launcher containers). Everything is on HDFS, uploaded once per content hash."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from glmix.deploy.code import upload_code
from glmix.deploy.environment import upload_environment
from glmix.deploy.spark_jars import spark_jars_archive

ENV_LINK = "glmix-env"


@dataclass(frozen=True)
class Shipment:
    spark_jars: str             # hdfs:// zip of Spark's jars
    spark_environment: str      # hdfs:// venv-pack archive for drivers and executors
    launcher_environment: str   # hdfs:// venv-pack archive for the launcher's tasks
    code: str                   # hdfs:// zip of glmix, jobs, launcher and the Avro schemas

    def spark_options(self) -> str:
        """spark-submit options: the driver (in YARN, ``--deploy-mode cluster``) and the executors
        run the shipped Python and import glmix from the shipped code."""
        python = f"./{ENV_LINK}/bin/python"
        return shlex.join(["--conf", f"spark.yarn.archive={self.spark_jars}",
                           "--archives", f"{self.spark_environment}#{ENV_LINK}", "--py-files", self.code,
                           "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}"])

    def launcher_options(self) -> str:
        """``launcher submit`` options: every task runs the shipped Python with the code as ``./code``."""
        return shlex.join(["--set", f"python.archive={self.launcher_environment}", "--set", f"code={self.code}"])


def ship(tensorflow: bool, say: Callable[[str], None] = print) -> Shipment:
    """Make (first time only) and upload (once per content) the archives; the launcher's tasks get
    the environment with TensorFlow when ``tensorflow`` (``GameConfig.needs_tensorflow``)."""
    base = upload_environment("base", say)
    return Shipment(spark_jars_archive(), base, upload_environment("tensorflow", say) if tensorflow else base,
                    upload_code())
