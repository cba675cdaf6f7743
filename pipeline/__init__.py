"""Temporally stable neural style transfer for video."""
import os

# TensorFlow's default CPU allocator gives every large buffer back to the system when it is freed,
# so each loss evaluation at 512 px faulted in fresh pages: 1.4 million minor page faults per
# frame, 14 % of the CPU time in the kernel. Its BFC allocator keeps them for the next evaluation:
# 9.4x fewer faults, 3.6 % in the kernel, no more memory (benchmarks/host_churn.py). TensorFlow
# reads this when it starts, so it is set before anything imports it; a value of the user's wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
