"""Fine-tuning: plain cross-entropy on the incoming stream, no memory, no regulariser.

The lower bound of online continual learning: every step minimises
``CE(mask(f(x)), y)`` over the current batch only (unexposed logits at −inf).
"""

from __future__ import annotations

from strategies.continual import register
from strategies.continual.base import ModelLearner, ModelOptions


@register("finetune")
class Finetune(ModelLearner):
    """Cross-entropy on the stream batch; see :class:`~strategies.continual.base.ModelLearner`."""

    Options = ModelOptions
    uses_memory = False
