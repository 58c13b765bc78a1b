"""Behavioural features: each customer's normal, as plain Python over plain state objects.

This is the reference the model is trained on (`fraudstream train` replays an archive through
`replay.feature_rows`); the job computes the same values in the JVM (`jvm/src/.../features`),
held equal to this module value by value by `tests/flink/test_model_job.py`.
"""

from fraudstream.features.history import DeviceHistory, UserHistory, device_step, user_step
from fraudstream.features.spec import FEATURES, FeatureSpec

__all__ = ["FEATURES", "DeviceHistory", "FeatureSpec", "UserHistory", "device_step", "user_step"]
