"""The learner's background publisher: what actors receive is the newest submitted parameters,
intact although the learner donates its own arrays right after handing them over."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from transport_helpers import SCHEMA, TOKEN

from serl.distributed import ActorClient, LearnerServer
from serl.train.learner_process import ParamPublisher


@functools.partial(jax.jit, donate_argnums=0)
def _next(params: dict) -> dict:
    """A stand-in for the learner's update: consumes (donates) its input."""
    return jax.tree.map(lambda x: x + 1.0, params)


def test_actors_get_the_newest_parameters_though_the_learner_donates_them() -> None:
    server = LearnerServer(TOKEN, SCHEMA, lambda batch: None)
    params = {"w": jnp.zeros((64, 64)), "b": jnp.zeros(64)}
    server.publish({"policy": jax.device_get(params)}, 1)
    publisher = ParamPublisher(server)
    try:
        with ActorClient(server.address, TOKEN, "a", SCHEMA) as client:
            for version in range(2, 52):
                params = _next(params)  # the previous arrays are gone (donated)
                publisher.submit(params, version)
            publisher.close()  # what is pending goes out first
            deadline = time.monotonic() + 60
            while (client.latest_params() or (0,))[0] != 51:
                assert time.monotonic() < deadline, client.latest_params()
                time.sleep(0.01)
            _, tree = client.latest_params()
    finally:
        publisher.close()
        server.close()
    np.testing.assert_array_equal(tree["policy"]["w"], np.full((64, 64), 50.0, np.float32))
    np.testing.assert_array_equal(tree["policy"]["b"], np.full(64, 50.0, np.float32))
