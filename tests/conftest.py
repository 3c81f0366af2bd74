import os

from hypothesis import HealthCheck, Phase, settings

# `ci` is derandomized so a red build reproduces; `thorough` digs deeper on a developer's machine:
#   HYPOTHESIS_PROFILE=thorough make test
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
# `noshrink` is `ci` without shrinking, for iterating on a failure quickly (shrinking can take
# minutes on the machine the helpers share).
settings.register_profile("noshrink", parent=settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
