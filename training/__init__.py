"""Training and evaluation: data sets, per-method training procedures, the trainer loop, metrics.

Imports ``engine`` (models, preprocessing, index) and never Qt or ``app``. The public names the
app's training panel and the CLI use are re-exported here:
- ``train(config, data_dir, out, resume=, cancel=, distributed=)``: generator of
  ``TrainProgress``, returns a ``TrainResult``; ``TrainConfig`` its frozen config; under
  torchrun, ``training.distributed.join_from_environment()`` gives ``distributed``;
- ``evaluate(model, data_dir, EvalConfig, cancel, extras=)``: generator of ``EvalProgress``,
  returns an ``EvalReport``; ``store_metrics`` writes a report into a checkpoint; ``extras``
  plug a method's extra figures into the one evaluation, e.g. ``reranking_figures(shortlists)``
  for a model that re-ranks (``model.rerank_features``);
- ``training.run.run_training(RunPlan, cancel, record=)``: a whole run as both front ends run
  it (train, per-epoch validation and preview, the final evaluation stored in the checkpoint,
  the run's record in ``training.runs``, the app's run history);
- ``load_dataset(folder)``: a validated ``SketchDataset`` (raises DatasetError naming files);
- ``list_procedures()``: the trainable methods;
- ``drain(gen, on_event)``: run any of these progress generators to its return value.
"""

from training.config import TrainConfig
from training.data import SketchDataset, load_dataset
from training.evaluate import EvalConfig, EvalProgress, EvalReport, evaluate, store_metrics
from training.methods import get_procedure, list_procedures
from training.progress import drain
from training.reranking import reranking_figures
from training.trainer import TrainProgress, TrainResult, run_files, train

__all__ = [
    "EvalConfig",
    "EvalProgress",
    "EvalReport",
    "SketchDataset",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "drain",
    "evaluate",
    "get_procedure",
    "list_procedures",
    "load_dataset",
    "reranking_figures",
    "run_files",
    "store_metrics",
    "train",
]
