"""Browsers on the fast path (issue #17): the hot documents with and without an ``Origin``.

A chat widget on another origin sends every request with an ``Origin`` header. Before #17 such
a request skipped the fast path (only the CORS middleware knew which headers to add). This
serves one Helpline (`helpline serve`, production settings, ``CORS_ORIGINS`` listing the
widget's origin) on the dataset of `bench.api`, and loads it from wrk with the same requests,
once as an API client sends them and once as a browser on the allowed origin does, the two
taking turns within each round. The ratio compares figures of the same run and server.

    python -m bench.browsers [--users N] [--duration S] [--rounds N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx

from bench.api import (
    WORKLOADS,
    Series,
    helpline_env,
    ids_files,
    load_arguments,
    lua_script,
    seed,
    serving,
    token,
    wrk,
)
from bench.common import bench_database, helpline_serve, machine, run_and_write

ORIGIN = "https://widget.example"
TARGET = 0.9  # with Origin, against the same request without it
HOT_DOCUMENTS = ("hot", "hot-read")


def run(args: argparse.Namespace) -> str:
    workloads = [w for w in WORKLOADS if w.name in HOT_DOCUMENTS]
    series: dict[tuple[str, bool], Series] = {}
    with bench_database("helpline_bench_browsers") as url, tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = seed(url, args, [])
        ids = ids_files(tmp, data, ["helpline"])["helpline", "hot"]
        env = {**helpline_env(url, args.workers), "CORS_ORIGINS": ORIGIN}
        port = 18600 + os.getpid() % 500
        with serving("helpline", helpline_serve(port, args.workers), env, port, tmp) as server:
            check_cors(server.base, data.hot[0][0])
            for round_ in range(args.rounds):
                for workload in workloads:
                    browser_first = round_ % 2 == 1  # the order alternates between rounds
                    for origin in (True, False) if browser_first else (False, True):
                        headers = {"Origin": ORIGIN} if origin else None
                        script = lua_script(tmp, workload, ids, headers=headers)
                        result = wrk(server.base, script, args.concurrency, args.duration)
                        if result.errors:
                            raise RuntimeError(f"{workload.name}: {result.errors} errors")
                        series.setdefault((workload.name, origin), Series()).results.append(result)
                    print(
                        f"round {round_ + 1}: {workload.name}: "
                        + ", ".join(
                            f"{'Origin' if o else 'no Origin'} "
                            f"{series[workload.name, o].results[-1].requests_per_s:,.0f}/s"
                            for o in (False, True)
                        ),
                        flush=True,
                    )
    return report(series, args)


def check_cors(base: str, customer: str) -> None:
    """The server answers the widget's origin with its CORS header (else the rows mean little)."""
    response = httpx.post(
        f"{base}/graphql",
        json={"query": WORKLOADS[1].query, "variables": {"c": customer}},
        headers={"authorization": f"Bearer {token(customer)}", "origin": ORIGIN},
        timeout=10,
    )
    if response.headers.get("access-control-allow-origin") != ORIGIN or "errors" in response.json():
        raise RuntimeError(f"the widget's origin is not served: {response.headers} {response.text}")


def report(series: dict[tuple[str, bool], Series], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Issue #17: browsers on the fast path",
        "",
        f"Measured {when} on {machine()}, by `make bench` (`python -m bench.browsers --users "
        f"{args.users} --conversations {args.conversations} --duration {args.duration:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}`): one `helpline serve` "
        f"({args.workers} worker(s), production settings, `CORS_ORIGINS={ORIGIN}`) on "
        "`bench.api`'s dataset; wrk, 2 threads, over loopback, each request a random customer "
        "with their own token, sent as an API client sends it and as a browser on the allowed "
        "origin does (`Origin` header; the answer carries `Access-Control-Allow-Origin`). The "
        "two take turns within each round, in an order that alternates; figures are medians "
        "over the rounds. Before #17 the browser's request went through Starlette's stack "
        "(measured then: about 750 req/s against 1,630 without `Origin`, 0.46x).",
        "",
        "| workload | no Origin req/s | p50 ms | p99 ms | with Origin req/s | p50 ms | p99 ms "
        "| ratio | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in (w for w in WORKLOADS if w.name in HOT_DOCUMENTS):
        api, browser = series[workload.name, False], series[workload.name, True]
        ratio = browser.median("requests_per_s") / api.median("requests_per_s")
        lines.append(
            f"| {workload.title} | {_cells(api)} | {_cells(browser)} | **{ratio:.2f}x** | "
            f">= {TARGET}x {'met' if ratio >= TARGET else 'missed'} |"
        )
    return "\n".join(lines) + "\n"


def _cells(figures: Series) -> str:
    return (
        f"{figures.median('requests_per_s'):,.0f} | {figures.median('p50_ms'):.2f} | "
        f"{figures.median('p99_ms'):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    load_arguments(parser, users=20_000, conversations=10_000, cold=0)
    args = parser.parse_args()
    return run_and_write(lambda: run(args), Path(args.write))


if __name__ == "__main__":
    sys.exit(main())
