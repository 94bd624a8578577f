"""Built-in Keras fixed-effect models, and the contract a user's model function follows.

A model function is called as ``build(num_features, **model_args)`` and returns a tf-keras model
whose inputs are ``{"indices": int32 [batch, width], "values": float32 [batch, width]}`` (a row's
indexed features, padded with value 0) and whose output is the margin, shape [batch, 1]. The
trainer adds the row's offset and applies the task's pointwise loss, so random effects can be
stacked on the margin exactly as on a GLM's.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def _bag(indices: tf.Tensor, values: tf.Tensor, table: keras.layers.Embedding) -> tf.Tensor:
    """Value-weighted sum of the rows' feature embeddings: an embedding bag over sparse features."""
    return tf.reduce_sum(table(indices) * tf.expand_dims(values, -1), axis=1)


def wide_and_deep(num_features: int, embedding_dim: int = 8, hidden: tuple[int, ...] = (64, 32),
                  l2: float = 1e-6) -> keras.Model:
    """Wide: a linear model over the sparse features. Deep: every feature (id-like or not) gets an
    embedding, pooled per row by value, then an MLP. The margin is their sum."""
    indices = keras.Input((None,), dtype="int32", name="indices")
    values = keras.Input((None,), dtype="float32", name="values")
    regularizer = keras.regularizers.l2(l2)
    wide = _bag(indices, values, keras.layers.Embedding(num_features, 1, embeddings_regularizer=regularizer,
                                                        embeddings_initializer="zeros", name="wide"))
    deep = _bag(indices, values, keras.layers.Embedding(num_features, embedding_dim,
                                                        embeddings_regularizer=regularizer, name="embeddings"))
    for units in hidden:
        deep = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer)(deep)
    deep = keras.layers.Dense(1, kernel_regularizer=regularizer)(deep)
    return keras.Model({"indices": indices, "values": values}, wide + deep, name="wide_and_deep")


def linear(num_features: int) -> keras.Model:
    """A GLM as a Keras model (the wide part alone): the baseline a deep model has to beat."""
    indices = keras.Input((None,), dtype="int32", name="indices")
    values = keras.Input((None,), dtype="float32", name="values")
    table = keras.layers.Embedding(num_features, 1, embeddings_initializer="zeros", name="wide")
    return keras.Model({"indices": indices, "values": values}, _bag(indices, values, table), name="linear")
