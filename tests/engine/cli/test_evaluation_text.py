"""The terminal's evaluation text stays short whatever the evaluation: only the classes that occur, the most
frequent confusions instead of a matrix nobody can read, the most confident mistakes and where the rest are."""

from pathlib import Path

import numpy as np

from cardinal.engine.cli.evaluation_text import evaluation_text
from cardinal.engine.inference.evaluation import ClassMetrics, Evaluation, Mistake


def synthetic(confusion, mistakes=()):
    names = tuple(f"class {index}" for index in range(len(confusion)))
    metrics = tuple(ClassMetrics(name, 0.5, 0.5, 0.5, int(confusion[i].sum())) for i, name in enumerate(names))
    return Evaluation(names, 0.5, metrics, confusion, tuple(mistakes), ())


def test_the_terminal_summary_of_thousands_of_classes_lists_confusions_not_a_matrix():
    confusion = np.eye(2000, dtype=np.int64) * 2
    confusion[4, 9] = 7
    confusion[12, 1999] = 3
    text = evaluation_text(synthetic(confusion))
    assert len(text) < 20_000 and len(text.splitlines()) < 120
    assert "2000 classes" in text and "most frequent confusions" in text
    lines = text.splitlines()
    assert lines.index(next(line for line in lines if "class 4 " in line and "class 9" in line)) < \
        lines.index(next(line for line in lines if "class 12 " in line and "class 1999" in line))  # 7 before 3


def test_the_terminal_summary_shows_only_the_classes_that_occur():
    confusion = np.zeros((1000, 1000), np.int64)  # an ImageNet model on a three-class folder
    confusion[3, 3], confusion[3, 7], confusion[500, 500] = 5, 2, 4
    text = evaluation_text(synthetic(confusion))
    rows = [line for line in text.splitlines() if line.startswith("class ") and line.split()[1].isdigit()]
    assert {row.split()[1] for row in rows} == {"3", "7", "500"}
    assert len(rows) == 3 + 3  # the per-class table and the matrix


def test_the_terminal_lists_the_most_confident_mistakes_and_says_how_many_more():
    confusion = np.array([[0, 30], [0, 10]])
    mistakes = [Mistake(Path(f"img{index:02d}.png"), 0, 1, 0.1, (index + 1) / 40) for index in range(30)]
    text = evaluation_text(synthetic(confusion, mistakes), all_mistakes_in="run/report.html")
    listed = [line for line in text.splitlines() if ".png:" in line]
    assert [line.split(":")[0].strip() for line in listed] == [f"img{index:02d}.png" for index in range(29, 19, -1)]
    assert "20 more" in text and "run/report.html" in text
