"""The report's line chart also draws over another whole-number x than epochs (labels used, in bench_active)."""

from cardinal.engine.reports.svg import Series, line_chart


def test_a_chart_over_labels_used_names_its_x_axis_and_tooltips():
    svg = line_chart("Accuracy", [10, 20, 30], [Series("random", "#1f77b4", [0.5, 0.6, 0.7])], y_label="accuracy",
                     percent=True, x_label="labels used")
    assert ">labels used</text>" in svg and "random, labels used 20: 60.0%" in svg and ">epoch<" not in svg
    assert ">epoch</text>" in line_chart("Loss", [1, 2], [Series("train", "#000", [1.0, 0.5])], y_label="loss")
