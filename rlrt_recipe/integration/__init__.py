"""verl glue: the registered estimators and policy loss, the teacher step, the rlrt_sync trainer, the reward.

No formula lives here: every number is computed by ``rlrt_recipe.signals``.
"""
