"""Audit page: many pairs or judged triplets at once; where LPIPS disagrees with PSNR, SSIM or
people, and why (the table, the disagreement plot, one row at a time)."""

from lpips_explain.ui import audit as view
from lpips_explain.ui import controls
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.runstate import RunState

opts, explainer = controls.page_setup(
    "Audit",
    "Score many pairs or judged triplets: where LPIPS disagrees with PSNR, SSIM or the judges, "
    "and which layers are behind it.", analysis=False)
run = RunState(("rows", "audit"))
with guard("reading the rows"), run.part("rows"):
    source = view.audit_input(run)
metrics = view.metric_choice()
with guard("auditing the rows"):
    result = run.compute("audit", "audit", (opts.model_key, source.key, tuple(metrics)),
                         lambda progress: view.run(explainer, source, opts.model_key, progress,
                                                   metrics),
                         progress="Auditing rows:")
run.finish()
view.summary_panel(result)
df = view.filters(result, view.frame(result))
view.table(result, df)
row = view.row_picker(result, df)
view.plot(result, row)
if row is not None:
    view.drilldown(result, row)
view.downloads(result)
