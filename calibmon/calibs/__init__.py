"""Master calibration products, their certification, and daily verification against them.

- ``products.py``: the product files (per-amp FITS layout), reading, writing, validation;
  :class:`~calibmon.calibs.products.CertifiedCalib`, what the pipeline's verify steps get.
- ``build.py``: masters (bias, dark, flat per physical_filter, defects) from one day's
  exposures, one amp's stack at a time (``calibmon calibs build``).
- ``registry.py``: certification of products for validity ranges and the lookup for a
  day_obs (Butler CALIBRATION-collection semantics), missing-product reports, validity advice.
- the verify steps (cp_verify style) are pipeline steps:
  :mod:`calibmon.pipeline.verify_steps`; the statistics themselves are pure functions in
  :mod:`calibmon.science.verify`.
- ``calibmon calibs build|certify|list|validity|import`` is :mod:`calibmon.cli.calibs`.

This package's ``__init__`` imports nothing: :mod:`calibmon.pipeline` imports
``calibs.products`` while ``calibs.build`` imports the pipeline. The run of
``calibs build`` (store, gain hints) is :mod:`calibmon.service.build_calibs`.
"""
