"""tinygrad_tf.nn: layers, losses, optimizers and state I/O (to come)."""
