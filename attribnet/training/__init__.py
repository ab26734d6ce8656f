"""The training library: loop, data, state, task, optimiser, run folder."""
