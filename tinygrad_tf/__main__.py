# The command-line entry point (`python -m tinygrad_tf`), not part of the engine: it hands over to
# the seq2seq recipe's command, tinygrad_tf.models.cli.
from tinygrad_tf.models.cli import command

command()
