# The command-line entry point (`python -m tinygrad_tf`), not part of the engine: it hands over to
# the seq2seq recipe's command, tinygrad_tf.models.cli.
import sys

from tinygrad_tf.models.cli import main

sys.exit(main())
