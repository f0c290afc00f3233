"""Load tests of the model service: locust scenarios, a one-command runner, thresholds.

    make loadtest                       # start the service, 32 users for 60 s, check targets
    python -m loadtests.run --help      # every option (users, duration, URL, thresholds)
    locust -f loadtests/locustfile.py --host http://127.0.0.1:3000   # locust's web UI

Torch-free: needs locust, pillow, numpy, psutil, httpx and the project's ``fmnist`` core.
Importing the package imports none of them; ``loadtests.launch`` (starts ``bentoml serve``
for the tests, the benchmarks and scripts/pipeline.py) needs httpx alone.
"""
