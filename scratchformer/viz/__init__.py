"""Look inside a model: attention heatmaps and loss curves (``plots``, matplotlib imported
only when a plot is drawn), the offline interactive attention explorer (``explorer``, a
self-contained HTML page, for toy tasks, the GPT and translation: ``records``) and the
training report (``report``: one offline page per run, ``insights``: what it flags).

    from scratchformer.viz import attention_for_text, plot_attention, write_attention_html
    rec = attention_for_text(model, task, "Nov 27, 2026")
    plot_attention(rec, kind="cross", path="attn.png"); write_attention_html(rec, "attn.html")
    write_report("runs/copy")                    # runs/copy/report.html
"""

from .explorer import attention_html, write_attention_html
from .plots import (AttentionRecord, attention_for_text, attention_name, close_figure,
                    collect_attention, load_model_and_task, plot_attention, plot_loss,
                    read_metrics, task_from_state)
from .records import attention_for_gpt, attention_for_translation
from .report import serve_report, write_report

__all__ = ["AttentionRecord", "attention_name", "collect_attention", "attention_for_text",
           "attention_for_gpt", "attention_for_translation", "load_model_and_task",
           "task_from_state", "plot_attention", "close_figure", "read_metrics", "plot_loss",
           "attention_html", "write_attention_html", "write_report", "serve_report"]
