"""Test-suite set-up shared by every test module.

One BLAS thread: the suite's matrices are small, and OpenBLAS threads that spin while
another process holds the second core made single steps 10× slower on a busy 2-core
machine. Set before NumPy is first imported (pytest imports conftest.py first), and only
as a default, so a caller's own setting wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
