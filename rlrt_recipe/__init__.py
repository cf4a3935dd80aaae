"""rlrt-recipe: self-distilled RLVR methods (RLRT, RLSD, OPSD) as a verl plug-in.

Layers, dependencies pointing down only:
  signals, privileged, config,    pure Python / torch, no verl import (tests/test_layering.py)
  checks
  integration/                    verl glue: estimators, loss, teacher step, pre-flight, trainer
  reward, data, report, logs      the math-verify reward, data preparation, tables and plots, metric logs
  testing/                        tiny local models and data, launchers and helpers for tests and benchmarks
  cpu/                            opt-in CPU platform + `hf` rollout (VERL_PLATFORM=cpu)
  plugin                          what verl's `verl.plugins` entry point imports
"""

__version__ = "0.1.0"
