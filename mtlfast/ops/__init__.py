"""The op layer: every compiled op beside its pure-PyTorch ``reference_*`` twin, and one dispatcher.

- :mod:`mtlfast.ops.bilstm`: the fused bidirectional LSTM over a model array.
- :mod:`mtlfast.ops.adadelta`: fused Adadelta (dense, masked blocks) and the embedding-row ops (sparse
  embedding backward, exact lazy row update).
- :mod:`mtlfast.ops.heads`: the per-run parts of a model array's training step as one call each over the K
  runs (heads + cross-entropy + the drawn heads' update, batch assembly, counter-based dropout masks).
- :mod:`mtlfast.ops.dispatch`: which implementation runs (compiled module, CPU features and kernel build,
  ``MTLFAST_CPU_PATH``), and :func:`describe`.
"""

from mtlfast.ops.adadelta import (  # noqa: F401
    DEFAULT_EPS,
    DEFAULT_LR,
    DEFAULT_RHO,
    FusedAdadelta,
    LazyEmbeddingAdadelta,
    adadelta_,
    adadelta_slots_,
    adadelta_rows_,
    adadelta_rows_flush_,
    batched_sparse_adadelta_occurrences_,
    embedding_grad_rows,
    embedding_rows_update_,
    reference_adadelta_,
    reference_adadelta_slots_,
    reference_adadelta_rows_,
    reference_adadelta_rows_flush_,
    reference_embedding_grad_rows,
    reference_embedding_rows_update_,
    reference_sparse_adadelta_occurrences_,
    slot_mask,
    sparse_adadelta_occurrences_,
)
from mtlfast.ops.heads import (  # noqa: F401
    batched_heads_step_,
    dropout_masks,
    dropout_threshold,
    heads_step_,
    make_batches,
    reference_dropout_masks,
    reference_heads_step_,
    reference_make_batches,
)
from mtlfast.ops.bilstm import BACKENDS, PRECISIONS, bilstm, reference_bilstm  # noqa: F401
from mtlfast.ops.dispatch import (  # noqa: F401
    cpu_kernel_path,
    cpu_kernel_paths,
    describe,
    forced_cpu_kernel_path,
    has_fused_adadelta,
    set_cpu_kernel_path,
)
