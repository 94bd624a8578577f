"""The Python environments containers run glmix with, packed once per set of pinned requirements.

A fresh virtualenv gets glmix's runtime requirements (pinned by requirements.lock; glmix itself
comes separately, as the code archive) and is packed with venv-pack. There are two flavors:
``base``, without TensorFlow, for Spark's drivers and executors (which never import it) and for
launcher tasks that do not need it either; and ``tensorflow``, for trainers that do. Without
TensorFlow the archive is a quarter of the size (232 MB against 936 MB), and every node that runs
one of its containers downloads and unpacks it (2.9 GB unpacked with TensorFlow: minutes on a
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


# what only TensorFlow's trainers import (glmix.glm.objective's TensorFlow engine, glmix.train.keras_*,
# the launcher's TensorBoard task); tensorboardX, which writes the GLM trainer's event files, stays
TENSORFLOW = {"tensorflow", "tensorboard", "tf-keras"}

Flavor = Literal["base", "tensorflow"]


def requirements(flavor: Flavor = "tensorflow", pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """glmix's runtime requirements, as pinned in pyproject.toml, less :data:`LEFT_OUT` (and, for the
    ``base`` flavor, less :data:`TENSORFLOW`)."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    names = [re.split(r"[=<>!~ ;\[]", requirement, maxsplit=1)[0] for requirement in declared]
    left_out = set(LEFT_OUT) | (TENSORFLOW if flavor == "base" else set())
    return [requirement for requirement, name in zip(declared, names, strict=True) if name not in left_out]


def environment_digest(flavor: Flavor = "tensorflow") -> str:
    """What decides the environment's content: the interpreter, the platform, the pins."""
    text = "\n".join([sys.version, platform.machine(), (REPO / "requirements.lock").read_text(),
                      *requirements(flavor)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def packed_environment(flavor: Flavor = "tensorflow", say: Callable[[str], None] = print) -> Path:
    """``.cache/ship/DIGEST/glmix-FLAVOR-env.tar.gz``, built on first use (install, pack: about two
    minutes with TensorFlow, one without)."""
    digest = environment_digest(flavor)
    target = CACHE / digest / f"glmix-{flavor}-env.tar.gz"
    if target.exists():
        return target
    import venv_pack

    build = CACHE / digest / "venv"
    shutil.rmtree(build, ignore_errors=True)
    say(f"building the {flavor} Python environment containers run glmix with ({build}) ...")
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
