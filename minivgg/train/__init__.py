"""Fine-tuning from scratch: a new head on VGG's conv base, trained with the loss, gradients and
update rules written out (``from minivgg import train``).

Reading order: loss (cross-entropy and its gradient) -> optimizers (SGD, Adam) -> head (with_head)
-> step (one learning step) -> data (class folders) -> loop (epochs, early stopping, checkpoints)
-> page, cli (``minivgg-train``).
"""
from .head import with_head
from .loss import accuracy, cross_entropy
from .optimizers import SGD, Adam
from .step import step, trainable_from

__all__ = ["SGD", "Adam", "accuracy", "cross_entropy", "step", "trainable_from", "with_head"]
