"""The HTML report of runs (`wb report`, `wb eval --html`): one self-contained file, for a CI artifact or a mail.

content.py gathers what it says from the store through compare/ and gate/ (the numbers `wb compare` and the gate
reports print); render.py turns that into HTML with plotly's charts inline."""
