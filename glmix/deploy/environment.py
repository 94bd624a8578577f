"""The Python environments containers run glmix with, packed once per set of pinned requirements.

A fresh virtualenv gets glmix's runtime requirements (pinned by requirements.lock; glmix itself
comes separately, as the code archive) and is packed with venv-pack. There are two: the
launcher's, for the trainers (TensorFlow and all), and Spark's, for drivers and executors, which
never import TensorFlow: without it the archive is a fraction of the size, and every node that
runs a Spark container downloads and unpacks it (2.9 GB unpacked with TensorFlow, minutes on a
small node). Packing the development
virtualenv instead is not possible: venv-pack refuses editable installs, and it would carry the
test tools. A venv-pack archive does not contain the interpreter: the nodes need the same Python
at the same path as this machine (``pyvenv.cfg``'s ``home``), as venv-pack documents.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from glmix.deploy.uploads import CACHE, REPO, upload_once
from glmix.errors import GlmixError

# runtime requirements containers do without
LEFT_OUT = {
    "pyspark": "Spark ships its own Python side (pyspark.zip, py4j) to every container",
    "venv-pack": "packs environments on the submitting machine",
    "matplotlib": "draws the HTML report, which runs on the submitting machine",
}


# what only the launcher's trainers import (glmix.glm.objective, glmix.train.keras_*)
TENSORFLOW = {"tensorflow", "tensorboard", "tensorboardX", "tf-keras"}

Flavor = Literal["launcher", "spark"]


def requirements(flavor: Flavor = "launcher", pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """glmix's runtime requirements, as pinned in pyproject.toml, less :data:`LEFT_OUT` (and, for
    Spark's containers, less :data:`TENSORFLOW`)."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    names = [re.split(r"[=<>!~ ;\[]", requirement, maxsplit=1)[0] for requirement in declared]
    left_out = set(LEFT_OUT) | (TENSORFLOW if flavor == "spark" else set())
    return [requirement for requirement, name in zip(declared, names, strict=True) if name not in left_out]


def environment_digest(flavor: Flavor = "launcher") -> str:
    """What decides the environment's content: the interpreter, the platform, the pins."""
    text = "\n".join([sys.version, platform.machine(), (REPO / "requirements.lock").read_text(),
                      *requirements(flavor)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def packed_environment(flavor: Flavor = "launcher", say: Callable[[str], None] = print) -> Path:
    """``.cache/ship/DIGEST/glmix-FLAVOR-env.tar.gz``, built on first use (install, pack: about two
    minutes for the launcher's, one for Spark's)."""
    digest = environment_digest(flavor)
    target = CACHE / digest / f"glmix-{flavor}-env.tar.gz"
    if target.exists():
        return target
    import venv_pack

    build = CACHE / digest / "venv"
    shutil.rmtree(build, ignore_errors=True)
    say(f"building the Python environment {flavor} containers run glmix with ({build}) ...")
    venv.EnvBuilder(with_pip=True).create(build)
    install = subprocess.run([str(build / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "-c", str(REPO / "requirements.lock"), *requirements(flavor)], capture_output=True, text=True)
    if install.returncode != 0:
        raise GlmixError(f"pip could not install the containers' environment: {install.stderr.strip()[-2000:]}")
    say(f"packing it into {target} ...")
    partial = target.with_name(target.name + ".partial")
    # with the bytecode pip compiled: containers would otherwise compile every module they import
    venv_pack.pack(str(build), output=str(partial), format="tar.gz", compress_level=1, force=True)
    partial.rename(target)
    shutil.rmtree(build)
    return target


def upload_environment(flavor: Flavor, say: Callable[[str], None] = print) -> str:
    local = packed_environment(flavor, say)
    return upload_once(local, "envs", local.parent.name)   # .cache/ship/DIGEST/glmix-FLAVOR-env.tar.gz
