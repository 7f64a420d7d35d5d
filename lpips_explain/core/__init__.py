"""The LPIPS core: the trunk registry, weights, the network and pair scorer, the exact decomposition."""
