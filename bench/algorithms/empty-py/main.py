# The empty task in Python: does nothing and returns None. Warm-up jobs pass
# {"warm": ms} to hold the worker briefly and learn which process ran it, so
# the benchmark can tell when every worker of the pool is up.
import os
import time


def start(args):
    x = args["input"][0]
    if isinstance(x, dict) and isinstance(x.get("warm"), (int, float)):
        time.sleep(x["warm"] / 1000)
        return os.getpid()
    return None
