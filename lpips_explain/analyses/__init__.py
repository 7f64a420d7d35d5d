"""Analyses on the core, one sub-package per question.

- ``pair``: explaining one pair (or triplet): the explanation, repair, sensitivity, equivalents;
- ``attribution``: pixel and layer attributions (Captum);
- ``checks``: checks of the explanation (faithfulness) and of the modes (mode_error, diagnostics);
- ``calibration``: fitting the lin heads to human judgments, and the domain gap;
- ``audit``: scoring a table of pairs;
- ``inputs`` (the checks of the images and scorer every analysis is given) and ``jsonable``
  (numbers as JSON takes them) are shared by all of them.
"""
