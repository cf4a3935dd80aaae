"""verl glue: the registered estimators and policy loss, the teacher step, the pre-flight, the rlrt_sync trainer.

No formula lives here: every number is computed by ``rlrt_recipe.signals``.
"""

# verl first: importing verl loads this package's plug-in (the ``verl.plugins`` entry point), which imports the
# modules below; a module of this package imported before verl would be half-initialized when the plug-in
# re-imports it (a cycle: the plug-in would log that its trainer could not load).
import verl  # noqa: F401
