"""rlrt-recipe: self-distilled RLVR methods (RLRT, RLSD, OPSD) as a verl plug-in.

Layers, dependencies pointing down only:
  signals, privileged, config     pure Python / torch, no verl import
  integration/                    verl glue: estimators, loss, teacher step, trainer, reward
  cpu/                            opt-in CPU platform + `hf` rollout (VERL_PLATFORM=cpu)
  plugin                          what verl's `verl.plugins` entry point imports
"""

__version__ = "0.1.0"
