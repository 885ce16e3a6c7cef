"""Run untrusted generated code for pass@1: a subprocess with a time limit, a memory limit and no network.

The child is a fresh `python -I` (isolated: no user site, no PYTHON* variables) in an empty temporary
directory, with `RLIMIT_AS` (memory), `RLIMIT_CPU`, `RLIMIT_FSIZE` and `RLIMIT_NPROC` set, in its own
session so a timeout kills everything it started. Network access is cut inside the interpreter: the
socket module's constructors raise before the program runs. That stops ordinary code (urllib,
requests, sockets) but not a program that goes out of its way (ctypes); run evaluations of untrusted
models inside a container or VM without a network as well.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile

# Replaces the socket constructors before the program runs.
NO_NETWORK = """
import socket as _s
def _blocked(*a, **k):
    raise OSError("network access is disabled in this sandbox")
class _NoSocket(_s.socket):  # a class, so that modules subclassing socket.socket (ssl) still import
    def __init__(self, *a, **k):
        _blocked()
_s.socket = _NoSocket
_s.create_connection = _s.getaddrinfo = _s.socketpair = _blocked
del _s
"""

_FENCE = re.compile(r"```(?:python|py|Python)?\s*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The last fenced code block of a completion, or the whole text when there is none.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    """
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def _launcher(memory_mb: int, cpu_s: int) -> str:
    """Set the limits inside the child, then run the program: `preexec_fn` is unsafe in a threaded parent."""
    return (
        "import resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_mb * 2**20}, {memory_mb * 2**20}))\n"
        f"resource.setrlimit(resource.RLIMIT_CPU, ({cpu_s}, {cpu_s}))\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({16 * 2**20}, {16 * 2**20}))\n"
        "resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )


def run_program(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> tuple[bool, str]:
    """Run `source`; returns (whether it exited 0 within the limits, a one-line reason when it did not)."""
    with tempfile.TemporaryDirectory(prefix="rsim-exec-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w") as f:
            f.write(NO_NETWORK + "\n" + source)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "LANG": "C.UTF-8", "no_proxy": "*"}
        # Popen, not run: on a timeout `run` kills the child only, then waits for pipes that a surviving
        # grandchild still holds open. The child leads its own session, so killing its group ends them all.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _launcher(memory_mb, int(timeout_s) + 1), path],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            return False, f"timed out after {timeout_s:g} s"
    if proc.returncode == 0:
        return True, ""
    last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return False, last[:200]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def humaneval_program(completion: str, prompt: str, test: str, entry_point: str) -> str:
    """The program HumanEval runs: the function (the model's, or the prompt completed by it), the tests, the check."""
    code = extract_code(completion)
    body = code if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", code) else prompt + code
    imports = "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))
    return f"{imports}\n{body}\n\n{test}\n\ncheck({entry_point})\n"
