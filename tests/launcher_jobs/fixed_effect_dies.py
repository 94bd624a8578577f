"""The fixed-effect trainer (same arguments), except that worker 1 of attempt 1 dies by SIGKILL after
iteration 7, as on a lost node. The chief checkpoints at iteration 5 before it: in lock step, worker
1 cannot finish iteration 7 before the chief has passed iteration 5."""

import os
import signal
import sys

import glmix.train.fixed_effect as fixed_effect

solver = fixed_effect.minimize


def minimize(*args, callback, **kwargs):
    def callback_then_die(state):
        callback(state)
        if state.iteration == 7 and os.environ["GLMIX_TASK_INDEX"] == "1" and os.environ["GLMIX_ATTEMPT"] == "1":
            print("worker 1 dies after iteration 7", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return solver(*args, callback=callback_then_die, **kwargs)


fixed_effect.minimize = minimize
sys.exit(fixed_effect.main())
