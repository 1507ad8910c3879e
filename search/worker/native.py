"""Keep TensorFlow's native start-up chatter off the terminal.

TensorFlow's C++ code logs through absl before logging is initialised, and those lines
("oneDNN custom operations are on", "Could not find cuda drivers", "failed call to cuInit")
ignore ``TF_CPP_MIN_LOG_LEVEL``. The only way to keep them out of a progress display is to
capture file descriptor 2 while TensorFlow starts. What was captured is replayed if starting
fails, so no real error is hidden.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_native_stderr"]


@contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Capture native writes to stderr inside the block; replay them if the block raises."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
