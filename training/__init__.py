"""Training and evaluation: data sets, per-method training procedures, the trainer loop, metrics.

Imports ``engine`` (models, preprocessing, index) and never Qt or ``app``. The public names the
app's training panel and the CLI use are re-exported here.
"""
