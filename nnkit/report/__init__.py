"""What a run shows: the tables ``nnkit show`` prints (:mod:`.tables`) and the figures
(:mod:`.figures`), from a run's tables; and its report (:mod:`.page`), the one module
here that writes files: ``RUN/report.html`` and ``RUN/report.md``."""
