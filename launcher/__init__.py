"""A TonY-like launcher: distributed TensorFlow jobs as YARN applications (Skein) or local processes."""
