"""Training: the one loop (``trainer``), optimizers and gradient clipping (``optim``),
learning-rate schedules (``schedules``), checkpoints (``checkpoint``), the progress
display (``progress``), the toy-task recipes (``recipes``) and the GPT's glue (``lm``)."""
