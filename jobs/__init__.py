"""Spark jobs, one module per pipeline stage; each runs under spark-submit (local[*] or --master yarn)."""
