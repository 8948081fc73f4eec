"""Reference networks: the tutorial's 784-10-10 net and MLPs, each with hand-derived NumPy backprop."""
