"""Experience replay (ER; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
Learning", Eq. 2 with a reservoir buffer).

Each step minimises ``CE(mask(f(x)), y)`` on the incoming batch concatenated with
``stream.memory_batch_size`` samples drawn from the replay memory; the engine owns the memory
(``stream.memory_size``, ``stream.memory_policy``) and stores every sample with its correct
exposed label.
"""

from __future__ import annotations

from strategies.continual import register
from strategies.continual.base import ModelLearner, ModelOptions


@register("er")
class ExperienceReplay(ModelLearner):
    """Cross-entropy on stream + memory samples (the engine mixes them in)."""

    Options = ModelOptions
    uses_memory = True
