"""The LPIPS core: the network, its weights, the exact breakdown and the ways it is computed.

One module, one job:

* the metric: ``trunks`` (the one registry of trunks), ``model`` (the network and the
  pair scorer), ``decompose`` (the exact breakdown into layers, channels and maps),
  ``modes`` (precision and device of the forward passes, each result labelled);
* its weights: ``weights`` (where each trunk and lin head comes from), ``published`` (the
  published trunks fetched from the package index), ``trunk_hash`` (is a trunk the
  published one), ``heads`` (official, calibrated or custom lin heads), ``atomic`` (a
  file written whole or not at all);
* second opinions on the same trunks: ``dists`` (DISTS, exact stage terms), ``stlpips``
  (shift-tolerant LPIPS), ``metric_files`` (their weight files, pinned digests);
* large images: ``geometry`` (a trunk's layer geometry: kernel, stride, padding and
  receptive field of every tap, and the tile layout), ``budget`` (the memory budget, byte
  estimates and the plan: untiled, tiled or refused), ``tiling`` (the exact tiled
  computation a plan asks for);
* many copies of one image: ``windowed`` (copies that differ inside one box each, scored
  on the windows the box reaches), ``cache`` (encoded references kept for reuse);
* the machine: ``memory`` (the process's memory: resident, peak, freed heap returned),
  ``profiling`` (latency, throughput and peak memory per trunk, size and mode),
  ``progress`` (the terminal's progress bar).

Nothing is imported here: ``import lpips_explain.core`` stays cheap, and each command
loads only the modules it uses.
"""

__all__ = ["atomic", "budget", "cache", "decompose", "dists", "geometry", "heads", "memory",
           "metric_files", "model", "modes", "profiling", "progress", "published", "stlpips",
           "tiling", "trunk_hash", "trunks", "weights", "windowed"]
