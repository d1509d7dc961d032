"""sim/: one simulated run and its judgement — ``runner`` (plugins → build → offline → verify),
the per-page and whole-machine ``checks``, ``verify`` (sync, the image's checker, every file
read back), ``report``, page ``classify``/``pageclass``, injected ``faults``, the host's
``memguard`` and the ``bench``mark."""
