"""Look inside a trained model: attention heatmaps and loss curves (``plots``, matplotlib
imported only when a plot is drawn) and the offline interactive attention explorer
(``explorer``, a self-contained HTML page).

    from scratchformer.viz import attention_for_text, plot_attention, write_attention_html
    rec = attention_for_text(model, task, "Nov 27, 2026")
    plot_attention(rec, kind="cross", path="attn.png"); write_attention_html(rec, "attn.html")
"""

from .explorer import attention_html, write_attention_html
from .plots import (AttentionRecord, attention_for_text, attention_name, close_figure,
                    collect_attention, load_model_and_task, plot_attention, plot_loss,
                    read_metrics)

__all__ = ["AttentionRecord", "attention_name", "collect_attention", "attention_for_text",
           "load_model_and_task", "plot_attention", "close_figure", "read_metrics", "plot_loss",
           "attention_html", "write_attention_html"]
