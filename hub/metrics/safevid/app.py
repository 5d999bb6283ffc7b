"""The metric's Space: a form that scores stored judgements with the ``safevid`` metric.

Written against today's gradio (the version the card's ``sdk_version`` pins): evaluate 0.4.6's
``launch_gradio_widget`` builds its form with ``gr.inputs``/``gr.outputs``, removed in gradio 4, and the
gradio versions that still have them cannot install beside this metric's dependencies.

A Space holds no judge model, and a public form must not make the Space send requests to addresses its
visitors type, so the form re-scores *stored* judgements: one row per response, with the raw risk-judge output
(``judge_outputs``, e.g. ``RISK_SCORE: 1``) beside the metric's inputs. A live judge is used from Python
(``evaluate.load(...).compute(..., judge=...)``), as the card shows.
"""

from pathlib import Path

import evaluate
import gradio as gr

# The Space's own folder: works whatever organisation the Space lives in.
FOLDER = Path(__file__).resolve().parent
JUDGE_OUTPUTS = "judge_outputs"


def score(module: evaluate.EvaluationModule, table) -> dict:
    """The metric over the form's table (a `pandas.DataFrame`), helpfulness not judged (no outputs for it)."""
    columns = [*module.features, JUDGE_OUTPUTS]
    rows = [[str(value) for value in row] for row in table[columns].itertuples(index=False)]
    rows = [row for row in rows if any(cell.strip() for cell in row)]  # the form's trailing empty rows
    if not rows:
        raise gr.Error("Fill in at least one row: a response, its prompt, subcategory, query style, description "
                       "and the judge's raw output.")  # fmt: skip
    inputs = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    try:
        return module.compute(**inputs, helpfulness=False)
    except ValueError as error:  # bad input: said in the form, not as a traceback
        raise gr.Error(str(error)) from None


def build_demo(module: evaluate.EvaluationModule) -> gr.Interface:
    """The form: a table of the metric's inputs plus the stored judge outputs, and the results as JSON."""
    columns = [*module.features, JUDGE_OUTPUTS]
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    return gr.Interface(
        fn=lambda table: score(module, table),
        inputs=gr.Dataframe(
            headers=columns, column_count=len(columns), row_count=1, datatype="str", label="Responses"
        ),
        outputs=gr.JSON(label=module.name),
        title=f"Metric: {module.name}",
        description=(
            "Re-score stored judgements: one row per response, with the raw risk-judge output in "
            f"`{JUDGE_OUTPUTS}` (e.g. `RISK_SCORE: 1`). A live judge is used from Python, as the card shows."
        ),
        article=readme.split("---", 2)[-1],  # the card without its YAML header
        flagging_mode="never",
    )


module = evaluate.load(str(FOLDER))
demo = build_demo(module)

if __name__ == "__main__":  # a Space runs `python app.py`
    demo.launch()
