import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "sdelab",
    deadline=None,
    max_examples=int(os.environ.get("SDELAB_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("sdelab")
