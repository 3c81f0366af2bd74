import os

from hypothesis import HealthCheck, settings

# `ci` is derandomized so a red build reproduces; `thorough` digs deeper on a developer's machine:
#   HYPOTHESIS_PROFILE=thorough make test
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
