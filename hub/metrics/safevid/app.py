from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

# The Space's own folder: works whatever organisation the Space lives in.
module = evaluate.load(str(Path(__file__).resolve().parent))
launch_gradio_widget(module)
