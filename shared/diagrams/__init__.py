"""The course's own teaching diagrams, drawn with matplotlib (never the book's images).

A notebook cell calls one function, e.g. ``diagrams.sliding_window()``; the figure is stored in the
notebook as an output, so it shows in JupyterLab, in Colab and on a repository web page without running
anything. Every diagram uses the same small palette and box style as the chapter plots (matplotlib's
default colours), and draws only what the text next to it explains.
"""

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED  # noqa: F401  (the palette)
from shared.diagrams.appendix_a import *  # noqa: F403
from shared.diagrams.chapter_5 import *  # noqa: F403
from shared.diagrams.chapters_2_to_4 import *  # noqa: F403
from shared.diagrams.chapters_6_and_7 import *  # noqa: F403
from shared.diagrams.dpo import *  # noqa: F403
from shared.diagrams.llama_qwen import *  # noqa: F403
