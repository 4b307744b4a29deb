"""How functions that run once are compiled.

Parameter initialisation runs once per job, but on XLA:CPU it was the slowest program to compile: LLVM's
optimisation passes over the unrolled threefry rounds of every initializer took 14 s for the tiny tokenizer
(2.4 s at backend optimisation level 0) and 6 s for the tiny generator. Every training job, test and
documented command paid that. At level 0 the initial values differ from the default level's only in float
rounding (the random bits are the same integers), and they are the same from run to run.
"""

import jax

# XLA DebugOptions for a one-off program on CPU; other backends keep their defaults.
ONE_OFF_CPU_OPTIONS = {'xla_backend_optimization_level': 0}


def jit_one_off(fn, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` for a function called once (param init): cheap to compile, not fast to run."""
  options = ONE_OFF_CPU_OPTIONS if jax.default_backend() == 'cpu' else None
  return jax.jit(fn, compiler_options=options, **jit_kwargs)
