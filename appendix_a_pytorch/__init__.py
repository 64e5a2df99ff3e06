"""Appendix A: an introduction to PyTorch (tensors, autograd, a multilayer network, data loaders,
training, saving and loading, GPUs)."""
