"""The Gemini API's Files and Batch APIs, client side: the ``BatchRoute`` of ``GeminiProvider``
(``route.GeminiBatch``), one module per job: ``calls`` (one authenticated call and its failure),
``wire`` (Google's Operation and File JSON), ``upload`` (the resumable upload protocol),
``jobs`` and ``files`` (the resources), ``download`` (results streamed to disk), ``lines``
(request and result lines of a JSONL file).
"""
