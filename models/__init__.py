"""tinygrad_tf.models: the Transformer and the seq2seq recipe (to come)."""
