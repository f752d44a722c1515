"""Master calibration products, their certification, and daily verification against them.

- ``products.py``: the product files (per-amp FITS layout), reading, writing, validation;
  :class:`~calibmon.calibs.products.CertifiedCalib`, what the pipeline's verify steps get.
- the masters (bias, dark, flat per physical_filter, defects) are built from one day's
  exposures, one amp's stack at a time, by :mod:`calibmon.pipeline.masters`
  (``calibmon calibs build``).
- ``registry.py``: certification of products for validity ranges and the lookup for a
  day_obs (Butler CALIBRATION-collection semantics), missing-product reports, validity advice.
- the verify steps (cp_verify style) are pipeline steps:
  :mod:`calibmon.pipeline.verify_steps`; the statistics themselves are pure functions in
  :mod:`calibmon.science.verify`.
- ``calibmon calibs build|certify|list|validity|import`` is :mod:`calibmon.cli.calibs`.

This package sits below the pipeline: it imports nothing of :mod:`calibmon.pipeline`. The run of
``calibs build`` (store, gain hints) is :mod:`calibmon.service.build_calibs`.
"""
