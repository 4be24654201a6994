"""PyTorch Practice's grader: `grader check`, stub generation and cohort grading."""
import os

# The grader forks test processes from a parent that may have asked whether CUDA is there;
# answered through NVML, the question does not initialise CUDA in the parent, so forked
# children can still use the GPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

__version__ = "0.1.0"
