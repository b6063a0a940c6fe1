import os

import torch
from hypothesis import HealthCheck, settings

# The tests use small tensors: one intra-op thread is faster for them and avoids
# oversubscription when the machine is shared (CI has 2 cores).
torch.set_num_threads(1)

settings.register_profile(
    "sdelab",
    deadline=None,
    max_examples=int(os.environ.get("SDELAB_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("sdelab")
