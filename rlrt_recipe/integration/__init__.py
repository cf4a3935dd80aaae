"""verl glue: the registered estimators and policy loss, the teacher step, the pre-flight, the rlrt_sync trainer.

No formula lives here: every number is computed by ``rlrt_recipe.signals``.
"""
