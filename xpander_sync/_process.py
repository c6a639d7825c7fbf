"""Which process of which host: what a file shared by processes records of its writers.

The report outbox marks the rows a flusher holds, and the worker journal names its file, with
this host and process id, so that the claims and the tasks of a process that was killed
(kill -9, the OOM killer) can be taken over at once by another process of the same host.
"""

from __future__ import annotations

import os
import socket

#: This host's name, as it appears in claim marks and journal file names.
HOST = socket.gethostname()


def is_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (this process counts as running).

    Args:
        pid: a process id recorded by a process of this host.

    Returns:
        ``True`` only when the process certainly no longer exists.
    """
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by another user
        return False
    return False
