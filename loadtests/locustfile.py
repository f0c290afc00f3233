"""Locust scenarios for the Fashion-MNIST service (contract: docs/api.md).

What one user does, request by request (shares are settable):
  * a single-image PNG upload to ``POST /classify`` (the rest, ~78 %),
  * a batch of 16-256 real test images (``--batch-share``, 20 %), half as JSON to
    ``POST /classify_batch``, half as ``.npy`` to ``POST /classify_npy``,
  * a bad request (``--bad-share``, 2 %: corrupt PNG, wrong shape, unknown model) that
    must be refused with a 4xx: there a 4xx counts as a success, a 200 or 5xx as a failure.
Models are picked per request by ``--model-mix`` (default: the study's models, equal shares).

Run it (the service on 127.0.0.1:3000; the one-command version is ``make loadtest``):

    locust -f loadtests/locustfile.py --host http://127.0.0.1:3000          # web UI :8089
    locust -f loadtests/locustfile.py --host http://127.0.0.1:3000 --headless \\
        -u 32 -r 8 -t 60s --csv reports/loadtest/run --html reports/loadtest/run.html \\
        --model-mix baseline=0.7,deeper=0.3 --batch-share 0.1

Every custom option can also come from the environment (``LOADTEST_MODEL_MIX``, ...), and
locust's own from ``LOCUST_USERS``, ``LOCUST_RUN_TIME``, ``LOCUST_HOST``, ...
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from locust import FastHttpUser, events, task
from locust.env import Environment

# locust puts this file's folder, not the repository root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.payloads import (  # noqa: E402
    DEFAULT_MODEL_MIX,
    MODELS,
    Body,
    PayloadPool,
    bad_requests,
    build_pool,
    load_images,
    parse_model_mix,
)

SINGLE_NAME = "/classify"  # the row the single-image p99 target is checked on


@dataclass(frozen=True)
class Scenario:
    """Everything a user needs, built once per locust process before users start."""

    pool: PayloadPool
    bad: list[Body]
    models: list[str]
    model_weights: list[float]
    batch_share: float
    bad_share: float
    wait_min: float
    wait_max: float


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("Fashion-MNIST scenario")
    group.add_argument(
        "--model-mix",
        env_var="LOADTEST_MODEL_MIX",
        default=DEFAULT_MODEL_MIX,
        help="share of requests per model (default: %(default)s)",
    )
    group.add_argument(
        "--batch-share",
        env_var="LOADTEST_BATCH_SHARE",
        type=float,
        default=0.2,
        help="share of requests that are batches of 16-256 images (default: %(default)s)",
    )
    group.add_argument(
        "--bad-share",
        env_var="LOADTEST_BAD_SHARE",
        type=float,
        default=0.02,
        help="share of deliberately bad requests that must get a 4xx (default: %(default)s)",
    )
    group.add_argument(
        "--min-batch",
        env_var="LOADTEST_MIN_BATCH",
        type=int,
        default=16,
        help="smallest batch (default: %(default)s)",
    )
    group.add_argument(
        "--max-batch",
        env_var="LOADTEST_MAX_BATCH",
        type=int,
        default=256,
        help="largest batch (default: %(default)s)",
    )
    group.add_argument(
        "--wait-min",
        env_var="LOADTEST_WAIT_MIN",
        type=float,
        default=0.0,
        help="think time between a user's requests, lower bound in s (default: %(default)s)",
    )
    group.add_argument(
        "--wait-max",
        env_var="LOADTEST_WAIT_MAX",
        type=float,
        default=0.0,
        help="think time upper bound in s; 0/0 is a closed loop at full speed "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--data-dir",
        env_var="LOADTEST_DATA_DIR",
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: the usual discovery)",
    )


def build_scenario(options: Any) -> Scenario:
    mix = parse_model_mix(options.model_mix)
    if not 0.0 <= options.batch_share + options.bad_share <= 1.0:
        raise ValueError("--batch-share + --bad-share must lie in [0, 1]")
    if not 0.0 <= options.wait_min <= options.wait_max:
        raise ValueError("think time needs 0 <= --wait-min <= --wait-max")
    images = load_images(options.data_dir, limit=2000)
    return Scenario(
        pool=build_pool(images, min_batch=options.min_batch, max_batch=options.max_batch),
        bad=bad_requests(images[0]),
        models=list(mix),
        model_weights=list(mix.values()),
        batch_share=options.batch_share,
        bad_share=options.bad_share,
        wait_min=options.wait_min,
        wait_max=options.wait_max,
    )


@events.init.add_listener
def prepare(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is not None:
        FashionMNISTUser.scenario = build_scenario(environment.parsed_options)


class FashionMNISTUser(FastHttpUser):
    """A client that keeps sending real test images; see the module docstring."""

    scenario: ClassVar[Scenario | None] = None
    connection_timeout = 10.0
    network_timeout = 30.0

    def wait_time(self) -> float:
        s = self.scenario
        return random.uniform(s.wait_min, s.wait_max) if s else 0.0

    def _scenario(self) -> Scenario:
        if self.scenario is None:  # e.g. a locust library use without parsed options
            raise RuntimeError("scenario not built: run through the locust command line")
        return self.scenario

    @task
    def one_request(self) -> None:
        s = self._scenario()
        draw = random.random()
        if draw < s.bad_share:
            self.send_bad(random.choice(s.bad))
            return
        model = random.choices(s.models, s.model_weights)[0]
        if draw < s.bad_share + s.batch_share:
            self.send_good(random.choice(s.pool.batches[model]), name=None)
        else:
            self.send_good(random.choice(s.pool.singles[model]), name=SINGLE_NAME)

    def send_good(self, body: Body, name: str | None) -> None:
        headers = {"Content-Type": body.content_type}
        with self.client.post(
            body.path,
            data=body.data,
            headers=headers,
            name=name or body.path,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
            elif body.images > 1:
                answer = response.json()
                if answer.get("count") != body.images:
                    response.failure(f"count {answer.get('count')} != {body.images} images sent")
            elif b'"class_name"' not in (response.content or b""):
                response.failure("answer lacks class_name")

    def send_bad(self, body: Body) -> None:
        headers = {"Content-Type": body.content_type}
        with self.client.post(
            body.path,
            data=body.data,
            headers=headers,
            name=f"{body.path} [bad: {body.reason}]",
            catch_response=True,
        ) as response:
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"expected a 4xx for {body.reason}, got {response.status_code}")


__all__ = ["FashionMNISTUser", "MODELS", "SINGLE_NAME"]
