"""`dsaml demo`: a local web page where a listener hears a song, sees the model's curves, annotates the song and
gets a model of their own (the `demo` extra: `pip install "dsaml[demo]"`, built on Gradio).

`songs`: the synthetic songs the page renders itself; `curves`: a song's player and curves as HTML/SVG;
`session`: the work behind each click (no Gradio); `page`: the Gradio page and its launch; `page.js`/`page.css`:
the page's only script and style, served inline (the page loads nothing from elsewhere).
"""
