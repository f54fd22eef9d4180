"""Training: full-batch gradient descent (plain, momentum, Nesterov) and minibatch SGD
on a batch of networks at once, each init stopping on its own (:mod:`.loop`), and the
pure function that trains one chunk of inits of a study (:mod:`.chunk`)."""

from ..core.stops import STATUSES, Stop
from .chunk import Chunk, Task, chunk_size, evaluate, train_chunk
from .loop import TrainConfig, TrainResult, history_steps, train

__all__ = [
    "STATUSES", "Chunk", "Stop", "Task", "TrainConfig", "TrainResult", "chunk_size", "evaluate",
    "history_steps", "train", "train_chunk",
]  # fmt: skip
