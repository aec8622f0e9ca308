"""Generic Conv-TasNet recipe code: model, data, training, evaluation, export.

Nothing here knows a particular corpus; corpus folders under ``egs/`` produce
the standard layout (see ``local.metadata``) that this package reads.
"""
