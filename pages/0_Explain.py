"""Explain page (the app's default page): why does LPIPS say what it says about two images?

Run the app with ``streamlit run app.py``; app.py lists the pages. The pair is prepared once
(decoded, checked, aligned) and each part is an engine call on it, cached on its own options;
the parts are joined into one explanation. The verdict card at the top fills in as parts
arrive (the distance first, then the repair headline and the equivalents); the run state
above it says which part is being computed. The attribution map (when the map view asks for
it) and the sensitivity (when its panel's button is pressed) are computed on request: they
are the slowest parts; once asked for, they follow every new pair.
"""

import streamlit as st

from lpips_explain.ui import controls, explain, explain_panels, explain_where, inputs, keys, state
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached, result_store
from lpips_explain.ui.runstate import RunState
from lpips_explain.ui.widgets import glossary, presenting

opts, explainer = controls.page_setup(
    "LPIPS, explained",
    "why LPIPS finds two images close or far apart")
run = RunState(explain.PARTS)
card = st.empty()
opinions_slot = st.empty()  # the second opinions, below the verdict card
pair = inputs.pair_input(run)
swap = inputs.swapped()
controls.fill_share(pair.origin == "upload")
# Choices whose default is read off the result (largest layer, most sensitive sweep, half
# area) follow a new pair or new roles.
state.reset_when_changed(keys.RESULT_INPUTS, (pair.key, swap), keys.RESULT_DEFAULT_WIDGETS)
base = (opts.model_key, pair.key, swap)


def kind_key(part: str) -> tuple[str, tuple]:
    return f"explain-{part}", explain.part_key(part, base, opts)


def compute(part: str, breakdown=None):
    return run.compute(part, *kind_key(part),
                       lambda progress: explain.compute_part(explainer, prep, opts, swap, part,
                                                             progress, breakdown))


def draw_card(expl, waiting=()):
    card.empty()  # a fresh card: nothing of an earlier one may stay behind
    with card.container():
        explain.verdict_card(expl, waiting=waiting)


# The pair is prepared once; every part below is computed on this one object.
with guard("reading the pair"):
    prep = cached("prepare", (opts.model_key, pair.key),
                  lambda _p: explainer.prepare(pair.a.source(), pair.b.source()))
with guard("computing the distance"):
    fast = compute("breakdown")
# The card waiting for its parts is drawn only when they are to be computed: a rerun that
# finds them stored (every click on the page) goes straight to the card with them.
OPINIONS = ("explain-opinions", (*base, opts.top_k))
if not all(result_store().has(*kind_key(part)) for part in explain.CARD_PARTS):
    draw_card(fast, waiting=explain.CARD_PARTS)
if not result_store().has(*OPINIONS):
    with opinions_slot.container():
        explain.opinions_line(None, computing=True)

# The card's own parts next, then the card drawn complete. A part that fails says so and
# the others are still shown.
parts = []
for part in explain.CARD_PARTS:
    with guard(f"computing the {part}", stop=False):
        parts.append(compute(part, fast))
with guard("putting the verdict together"):
    draw_card(explain.join(fast, parts))

opinions = None
with guard("computing the second opinions", stop=False):
    opinions = run.compute("second opinions", *OPINIONS,
                           lambda _p: explain.compute_opinions(explainer, fast))
opinions_slot.empty()
with opinions_slot.container():
    explain.opinions_line(opinions)
# Presentation mode is the card and the large swipe view only: no engineering panels.
present = presenting()
where = None if present else explain_where.WhereView(fast, opts)
explain_panels.compare_panel(fast)

if explain_panels.wants_sensitivity():
    with guard("computing the sensitivity", stop=False):
        parts.append(compute("sensitivity", fast))
else:
    run.on_request("sensitivity")
if where is not None and where.wants_attribution:
    with guard("computing the attribution", stop=False):
        parts.append(compute("attribution", fast))
else:
    run.on_request("attribution")
with guard("putting the explanation together"):
    full = explain.join(fast, parts + explain.with_opinions(fast, opinions))
run.finish()
draw_card(full)
opinions_slot.empty()
with opinions_slot.container():
    explain.opinions_line(full.second_opinions)
if where is not None:
    where.fill(full)
if not present:
    explain_panels.layers_panel(full)
    explain_panels.channels_panel(full)
    explain_panels.sensitivity_panel(full)
    explain_panels.repair_panel(full)
    explain_panels.summary_panel(full)
    explain_panels.downloads(full)
    glossary(explain.GLOSSARY_TERMS)
