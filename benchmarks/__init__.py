"""Benchmarks: tinygrad_np against hand-written NumPy and PyTorch CPU, on the tutorial's MNIST networks.

Run `python -m benchmarks` (full mode, minutes) or `python -m benchmarks --quick` (seconds, what CI runs).
Every comparison runs in one process with its contenders interleaved round by round, and reports medians
over the rounds; the machine, thread counts and library versions go into the results. Output: JSON, a
Markdown table and a PNG chart of how step time scales.

    full_batch   784-10-10 full-batch step: tinygrad_np, the tutorial's NumPy backprop, PyTorch, matmuls alone
    minibatch    one epoch of a 784-128-10 MLP with Adam, batch 32 and 128
    overhead     microseconds per op (forward + backward) of a chain of ops on tiny tensors
    convergence  time to 97% test accuracy, and peak memory while training (full mode only)
    scaling      step time as batch size and hidden width grow (the chart)
    serve        the demo server under load: latency, slow clients, memory (server in a child process)
    cnn          Conv2d forward + backward at MNIST sizes, one epoch of a LeNet-style CNN with Adam, its peak memory
    busy         the recipes with BLAS's default threads, one thread and the thread policy, idle and beside one
                 busy process per core (`python -m benchmarks --only busy`)
"""
