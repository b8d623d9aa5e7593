"""mtlfast.train: single and pair runs, trained K at a time as one model array.

Public API
----------
``train_group(specs, inputs, settings, on_event, should_stop)``  train run specs as one array, report events
``prepare_inputs(task_paths, embeddings, emb_dim, task_names)``    load + encode a suite once per process
``RunSpec``, ``TrainSettings``, ``run_id_for``, ``plan_runs``        what to train (``plan_runs``: a sweep's runs, singles first)
events: ``RunStarted``, ``LossPoints``, ``Scores``, ``Checkpoint``, ``RunDone``, ``Progress``;
``TrainingInterrupted``
``evaluate(params, tasks, inputs, settings)``                       scores of one run
"""

from mtlfast.train.engine import evaluate, predict, train_group  # noqa: F401
from mtlfast.train.inputs import TrainInputs, prepare_inputs  # noqa: F401
from mtlfast.train.spec import (  # noqa: F401
    Checkpoint,
    LossPoints,
    Progress,
    RunDone,
    RunSpec,
    RunStarted,
    Scores,
    TrainingInterrupted,
    TrainSettings,
    plan_runs,
    run_id_for,
)
