"""Where work runs: devices, torchrun process groups, the FAISS import."""
