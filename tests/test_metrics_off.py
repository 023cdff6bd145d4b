"""With metrics off (the default), nothing of the metrics seam or of a metrics library loads.

(On the memory backend: redis-py 7 imports ``opentelemetry`` itself when it is installed.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import anyio
    from sse_channels import ChannelStore
    from sse_channels.asgi import SSEApp
    from sse_channels.testing import connect_sse

    async def main():
        async with ChannelStore() as store:
            async with connect_sse(SSEApp(store, "news")) as stream:
                await stream.wait_comments(1)
                await store.send("news", "hi")
                assert [e.data for e in await stream.read_events(1)] == ["hi"]
                store.revoke(channel="news")
                await stream.wait_finished(timeout=2)

    anyio.run(main)
    watched = ("sse_channels.metrics", "sse_channels._observe", "prometheus_client",
               "opentelemetry")
    print(json.dumps(sorted(
        name for name in sys.modules
        if any(name == w or name.startswith(w + ".") for w in watched)
    )))
    """
)


def test_a_store_streaming_without_metrics_imports_no_metrics_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_same_script_with_metrics_does_import_them() -> None:
    """The check above can fail: with metrics on, the modules show up in sys.modules."""
    script = SCRIPT.replace(
        "ChannelStore() as store",
        "ChannelStore(metrics=PrometheusMetrics()) as store",
    ).replace(
        "from sse_channels import ChannelStore",
        "from sse_channels import ChannelStore\n"
        "from sse_channels.metrics.prometheus import PrometheusMetrics",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"sse_channels.metrics", "sse_channels._observe", "prometheus_client"} <= set(found)
