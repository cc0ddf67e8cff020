"""report.html: what a run or an evaluation page shows, its HTML and its inline SVG charts."""
