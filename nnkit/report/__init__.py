"""What a run shows: the tables ``nnkit show`` prints (:mod:`.tables`) and the figures
(:mod:`.figures`), from a run's tables. Nothing here reads or writes files."""
