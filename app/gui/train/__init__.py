"""Train a model: the Train panel, its form, curves, preview strip and run history. The run
itself is ``training.run``, in a child process (``app.training_process``)."""
