"""gunicorn with two uvicorn workers, Prometheus multiprocess mode: /metrics sums the workers.

The app is ``_metrics_gunicorn_app``: a store on Redis (so a send reaches the streams of
both workers), ``PrometheusMetrics`` in the global registry, ``with_metrics``. Streams are
opened until both workers hold some; every scrape, whichever worker answers it, reports
the sum over both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _metrics_gunicorn_app import PREFIX_ENV, URL_ENV
from _redis import RedisServer, redis_server, unique_prefix
from _servers import HERE, RawHTTPStream, _wait_ready, free_socket, open_stream

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["redis_server"]  # the fixture, re-exported

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py is asyncio-only


@dataclass
class Gunicorn:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    multiprocess: bool

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(params=[True, False], ids=["multiprocess", "per-process"])
def gunicorn(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Gunicorn]:
    """gunicorn -w 2 -k uvicorn_worker.UvicornWorker, in its own process group."""
    prefix = unique_prefix()
    directory = tmp_path / "prometheus"
    directory.mkdir()
    sock = free_socket()
    fd = sock.fileno()
    environment = dict(os.environ)
    path = [HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
    environment["PYTHONPATH"] = os.pathsep.join(path)
    environment.update({URL_ENV: redis_server.url, PREFIX_ENV: prefix})
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if request.param:
        environment["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    command = [sys.executable, "-m", "gunicorn", "_metrics_gunicorn_app:make_app()"]
    command += ["--bind", f"fd://{fd}", "--workers", "2", "--worker-class"]
    command += ["uvicorn_worker.UvicornWorker", "--graceful-timeout", "3"]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(
        command,
        pass_fds=[fd],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers are in its group: the test ends them all
    )
    host, port = sock.getsockname()
    sock.close()
    try:
        _wait_ready(host, port, "/metrics", process, 30)
        yield Gunicorn(host, port, process, multiprocess=request.param)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        process.communicate(timeout=10)
        client = redis_server.client()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def parse(text: str) -> dict[str, float]:
    """Unlabelled samples by name (what these metrics have without a channel label)."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics", headers={"connection": "close"})
    assert response.status_code == 200
    return parse(response.text)


async def test_two_workers_report_summed_values_in_multiprocess_mode(gunicorn: Gunicorn) -> None:
    """Multiprocess: every scrape has the sums. Without it: one worker's part (the contrast)."""
    streams: list[RawHTTPStream] = []
    by_worker: dict[str, int] = {}
    try:
        # Connections land on either worker: open them until both hold at least two.
        with anyio.fail_after(30):
            while len(by_worker) < 2 or min(by_worker.values()) < 2:
                stream = await open_stream(gunicorn.host, gunicorn.port, "/events?channel=news")
                streams.append(stream)
                assert stream.status == 200
                await stream.wait_comments(1)
                worker = stream.headers["x-worker"]
                by_worker[worker] = by_worker.get(worker, 0) + 1
        total = len(streams)
        assert max(by_worker.values()) < total  # no single worker could report the total

        async with httpx.AsyncClient(base_url=gunicorn.url, timeout=5) as client:
            for n in range(3):
                response = await client.post(f"/send?channel=news&data=n{n}")
                assert response.status_code == 200
            for stream in streams:  # every stream, on either worker, gets all three
                assert [e.data for e in await stream.read_events(3)] == ["n0", "n1", "n2"]
            scrapes = [await scrape(client) for _ in range(8)]
            if not gunicorn.multiprocess:
                open_now = {samples["sse_channels_streams_open"] for samples in scrapes}
                assert open_now <= set(by_worker.values())  # each worker alone: a part
                return
            for samples in scrapes:
                assert samples["sse_channels_streams_open"] == total
                assert samples["sse_channels_events_sent_total"] == 3  # counted where sent
                assert samples["sse_channels_events_delivered_total"] == 3 * total
                assert samples["sse_channels_delivery_lag_seconds_count"] == 3 * total

            for stream in streams:
                await stream.aclose()
            # A multiprocess scrape reads each worker's metric files one after another (in
            # directory order), not as one snapshot: it may see a worker's gauge after a
            # stream closed and its histogram from just before. So wait for a scrape that
            # has both settled; every closed stream's duration must be counted.
            settled = {"sse_channels_streams_open": 0.0}
            settled["sse_channels_stream_duration_seconds_count"] = float(total)
            with anyio.fail_after(10):
                while True:
                    samples = await scrape(client)
                    if {name: samples[name] for name in settled} == settled:
                        break
                    await anyio.sleep(0.05)
            assert samples["sse_channels_stream_duration_seconds_count"] == total
            assert samples["sse_channels_streams_open"] == 0
    finally:
        for stream in streams:
            await stream.aclose()
