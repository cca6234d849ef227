"""The fake model of ``agent_bench.py`` in its own process: ``python agent_fake_llm.py PORT``.

A ``polos.testing.FakeLLMServer`` on 127.0.0.1:PORT answering with
``agent_shared.respond`` (no delay), until SIGTERM. In its own process so that serving
the model does not compete for the GIL with the loop under test (the baseline runs in
the benchmark's own process).
"""

from __future__ import annotations

import signal
import sys
import threading

from agent_shared import respond

from polos.testing import FakeLLMServer


def main() -> None:
    """Serve until SIGTERM or SIGINT; prints ``ready <url>`` once it accepts requests."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with FakeLLMServer(port=int(sys.argv[1])) as server:
        server.respond_with(respond)
        print(f"ready {server.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
