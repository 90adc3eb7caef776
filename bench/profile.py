"""``--profile DIR``: sample the server's workers with py-spy during the timed load.

py-spy attaches to each worker process from outside (no change to the server, so
the figures of a profiled run are only a little lower than an unprofiled one's),
writes the collapsed stacks of every worker to DIR and the summary ranks where the
time goes: *inclusive* (a function and everything it calls) and *self* (the
function's own frames). Install py-spy with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: a collapsed frame reads "function (path/to/file.py:123)"; the line is dropped
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
#: leaf frames (function, file, line or None) that wait rather than work: the event
#: loop polling (uvloop's is native, so its leaf is Runner.run), a pool thread or a
#: database thread waiting for its next job
_IDLE = (("select", "selectors.py", None), ("Runner.run", "asyncio/runners.py", None),
         ("_worker", "concurrent/futures/thread.py", None),
         ("Condition.wait", "threading.py", None), ("Queue.get", "queue.py", None),
         ("_connection_worker_thread", "aiosqlite/core.py", "59"))


def _idle(leaf: str) -> bool:
    match = re.match(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$", leaf.strip())
    if not match:
        return False
    return any(match["fn"] == fn and match["file"].endswith(path)
               and (line is None or match["line"] == line) for fn, path, line in _IDLE)


@contextlib.contextmanager
def sampling(pids: list[int], out_dir: Path, rate: int = 250) -> Iterator[None]:
    """py-spy records each pid while the body runs; stops them with SIGINT after."""
    beside = Path(sys.executable).with_name("py-spy")  # the venv's, if not on PATH
    exe = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if exe is None:
        raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    recorders = [subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--nonblocking", "--output", str(out_dir / f"worker-{pid}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
    try:
        yield
    finally:
        for rec in recorders:
            rec.send_signal(signal.SIGINT)
        for rec in recorders:
            try:
                rec.wait(30)
            except subprocess.TimeoutExpired:
                rec.kill()


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['fn']} ({path})"


def summarise(out_dir: Path, top: int = 25) -> str:
    """The top functions by inclusive and by self samples over all workers."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in sorted(out_dir.glob("worker-*.txt")):
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            raw = [f for f in stack.split(";") if f.strip()]
            if not raw or _idle(raw[-1]):
                continue
            frames = [_frame_name(f) for f in raw]
            total += count
            own[frames[-1]] += count
            for name in set(frames):
                inclusive[name] += count
    if not total:
        return "no samples (did py-spy attach? it needs ptrace permission)"
    lines = [f"busy samples: {total}", "", "inclusive %  function"]
    lines += [f"{100 * n / total:10.1f}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self %       function"]
    lines += [f"{100 * n / total:10.1f}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)
