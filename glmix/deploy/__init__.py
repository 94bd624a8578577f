"""Shipping glmix to a cluster: Spark's jars, a packed Python environment and glmix's code on HDFS,
uploaded once per content hash, so that no node needs glmix installed."""

from glmix.deploy.code import code_archive, zip_tree
from glmix.deploy.environment import packed_environment
from glmix.deploy.shipment import ENV_LINK, Shipment, ship
from glmix.deploy.spark_jars import spark_jars_archive
from glmix.deploy.uploads import cluster_home, upload_once

__all__ = ["ENV_LINK", "Shipment", "cluster_home", "code_archive", "packed_environment", "ship",
           "spark_jars_archive", "upload_once", "zip_tree"]
