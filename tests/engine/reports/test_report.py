import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.progress import run_to_end
from cardinal.engine.reports.report import ReportProgress
from cardinal.engine.runs.history import read_history
from cardinal.engine.runs.layout import REPORT_NAME
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model

MARKUP_CLASS = "<img src=x onerror=alert(1)>"  # a legal folder name
MARKUP_FILE = "<b>bold & odd.png"


class Page(HTMLParser):
    """What the tests look at in a report: elements with their attributes, ids, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if "id" in attributes:
            self.ids.add(attributes["id"])

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag, **wanted):
        return [attrs for name, attrs in self.elements if name == tag
                and all(attrs.get(key.replace("_", "-")) == value for key, value in wanted.items())]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A barely trained run (it makes mistakes) on shapes, one class and one file named with markup."""
    root = tmp_path_factory.mktemp("report")
    data = make_shapes_folder(root / "shapes", per_class=10)
    (data / "red_circles").rename(data / MARKUP_CLASS)
    (data / MARKUP_CLASS / "000.png").rename(data / MARKUP_CLASS / MARKUP_FILE)
    report = run_to_end(scan_dataset(data))
    events = []
    recipe = Recipe(mode="fast", epochs=3, batch_size=8, lr=1e-5, patience=None)
    result = run_to_end(train(report, make_tiny_model(), recipe, root / "run", device="cpu"), events.append)
    return data, result, events


def page_of(folder) -> tuple[str, Page]:
    text = (Path(folder) / REPORT_NAME).read_text(encoding="utf-8")
    return text, Page(text)


def test_a_run_ends_with_its_report_and_hands_over_the_evaluation(trained):
    _, result, events = trained
    assert result.paths.report.is_file() and result.evaluation is not None
    stages = {event.stage for event in events if isinstance(event, ReportProgress)}
    assert stages == {"evaluating", "explaining mistakes"}
    assert int(result.evaluation.confusion.sum()) == len(result.val_samples)
    assert result.evaluation.mistakes  # lr 1e-5: a head that has hardly moved from random


def test_curves_have_a_point_for_every_epoch(trained):
    _, result, _ = trained
    _, page = page_of(result.out_dir)
    epochs = [str(row.epoch) for row in read_history(result.out_dir)]
    assert epochs == ["1", "2", "3"]
    circles = [attrs for name, attrs in page.elements if name == "circle"]
    assert len(circles) == 2 * 2 * len(epochs)  # two charts, train and validation each
    for chart in ("loss-chart", "accuracy-chart"):
        assert chart in page.ids
    assert sorted(c["data-epoch"] for c in circles) == sorted(epochs * 4)


def test_confusion_matrix_sums_to_the_images_evaluated(trained):
    _, result, _ = trained
    _, page = page_of(result.out_dir)
    counts = [int(cell["data-count"]) for cell in page.all("td") if "data-count" in cell]
    assert len(counts) == 9 and sum(counts) == len(result.val_samples)
    assert f"{len(result.val_samples)} images in all" in "".join(page.text)


def test_everything_is_inside_the_file(trained):
    _, result, _ = trained
    text, page = page_of(result.out_dir)
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    images = page.all("img")
    shown = min(12, len(result.evaluation.mistakes))
    assert len(images) == 3 * shown
    for image in images:
        header, payload = image["src"].split(",", 1)
        assert header == "data:image/jpeg;base64"
        Image.open(io.BytesIO(base64.b64decode(payload))).verify()
    links = [attrs["href"] for name, attrs in page.elements if "href" in attrs]
    assert links and all(link.startswith("#") and link[1:] in page.ids for link in links)
    assert not [attrs for _, attrs in page.elements if "src" in attrs and not attrs["src"].startswith("data:")]


def test_user_names_are_escaped(trained):
    _, result, _ = trained
    text, page = page_of(result.out_dir)
    assert "<img src=x" not in text and "<b>bold" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert all(set(attrs) <= {"src", "alt"} for attrs in page.all("img"))  # no onerror= slipped in
    assert MARKUP_CLASS in "".join(page.text)  # shown as the text it is


def test_report_says_what_was_trained_and_at_what_size(trained):
    data, result, _ = trained
    _, page = page_of(result.out_dir)
    words = " ".join(page.text)
    assert "64 px" in words and "centre 64×64 px" in words  # the tiny model's crop
    assert str(data) in words and "lr" in words and "fast" in words  # dataset summary and recipe
    assert "Training finished after 3 epochs" in words


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_report_on_any_folder_has_no_run_parts(trained, capsys, tmp_path):
    data, result, _ = trained
    code, out, err = run_cli(capsys, "evaluate", result.paths.best, data, "--report", tmp_path / "pages",
                             "--device", "cpu")
    assert code == 0, err
    text, page = page_of(tmp_path / "pages")
    assert f"report: {tmp_path / 'pages' / REPORT_NAME}" in out
    assert "loss-chart" not in page.ids and "recipe" not in page.ids and "dataset" in page.ids
    counts = [int(cell["data-count"]) for cell in page.all("td") if "data-count" in cell]
    assert sum(counts) == 30  # all of the folder's images
    assert "this model was trained on" in err  # its numbers are optimistic, and it says so
    assert "seen in training, so these numbers are optimistic" in text  # on the page a colleague reads too


def test_evaluate_takes_a_run_folder_and_reports_its_curves(trained, capsys, tmp_path):
    data, result, _ = trained
    code, out, err = run_cli(capsys, "evaluate", result.out_dir, data, "--report", tmp_path / "again",
                             "--device", "cpu")
    assert code == 0, err
    assert out.startswith("accuracy ") and "on 30 images" in out
    _, page = page_of(tmp_path / "again")
    assert {"loss-chart", "accuracy-chart", "recipe"} <= page.ids
    assert len([1 for name, _ in page.elements if name == "circle"]) == 12


def test_evaluate_on_a_folder_without_a_model_says_so(capsys, tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    data = make_shapes_folder(tmp_path / "shapes", per_class=5)
    code, out, err = run_cli(capsys, "evaluate", empty, data)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "no model in it (best.safetensors is missing)" in err


def synthetic_page(confusion):
    import numpy as np

    from cardinal.engine.inference.evaluation import ClassMetrics, Evaluation
    from cardinal.engine.reports.content import ReportContent
    from cardinal.engine.reports.html import render_report

    confusion = np.asarray(confusion)
    names = tuple(f"class {index}" for index in range(len(confusion)))
    evaluation = Evaluation(names, 0.5, tuple(ClassMetrics(name, 0.5, 0.5, 0.5, 1) for name in names), confusion,
                            (), ())
    content = ReportContent("t", "m", "s", 64, 72, "images", evaluation, ())
    return Page(render_report(content))


def test_the_matrix_keeps_only_classes_that_occur():
    import numpy as np

    confusion = np.zeros((1000, 1000), int)  # an ImageNet model evaluated on a three-class folder
    confusion[3, 3], confusion[3, 7], confusion[500, 500], confusion[999, 3] = 5, 2, 4, 1
    page = synthetic_page(confusion)
    counts = [int(cell["data-count"]) for cell in page.all("td") if "data-count" in cell]
    assert len(counts) == 16 and sum(counts) == 12  # classes 3, 7, 500 and 999
    assert len(page.all("tr")) == (1 + 4) + (1 + 4)  # per-class table and matrix: a header and 4 rows each


def test_too_many_classes_for_a_matrix_lists_the_most_frequent_confusions():
    import numpy as np

    confusion = np.eye(80, dtype=int) * 3
    confusion[4, 9] = 7
    page = synthetic_page(confusion)
    assert not [cell for cell in page.all("td") if "data-count" in cell]
    text = " ".join(page.text)
    assert "Most frequent confusions" in text and "80 classes take part" in text


def test_chart_ticks_of_close_losses_read_differently():
    from cardinal.engine.reports.svg import Series, line_chart

    svg = line_chart("loss", [1, 2, 3], [Series("train", "#000", [1.0962, 1.0911, 1.0884])], y_label="loss")
    ticks = re.findall(r'class="tick" text-anchor="end">([^<]+)<', svg)
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
    accuracy = line_chart("acc", [1, 2], [Series("val", "#000", [0.5, 0.75])], y_label="accuracy",
                          y_range=(0.0, 1.0), percent=True)
    assert re.findall(r'class="tick" text-anchor="end">([^<]+)<', accuracy)[:3] == ["0%", "20%", "40%"]


def test_a_class_with_no_evidence_is_said_so_not_drawn_as_a_cold_map(tmp_path):
    import torch

    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import Mistake
    from cardinal.engine.reports.html import _mistake_card
    from cardinal.engine.reports.report import picture_mistakes
    from tests.conftest import encode, random_picture

    model = make_tiny_model(("cat", "dog", "fish"))
    with torch.no_grad():  # activations after the last ReLU are >= 0: all-positive weights see "dog" somewhere,
        model.network.fc.weight[1].abs_()  # all-zero weights see "cat" nowhere
        model.network.fc.weight[0].zero_()
    path = tmp_path / "cat.png"
    path.write_bytes(encode(random_picture(1), "PNG"))
    mistake = Mistake(path, true_index=0, predicted_index=1, true_probability=0.2, predicted_probability=0.6)
    (pictures,) = run_to_end(picture_mistakes(Classifier(model, device="cpu"), [mistake]))
    assert pictures.no_evidence == frozenset({"true"})
    card = _mistake_card(1, pictures, model.class_names)
    assert "no evidence for “cat” anywhere" in card and "where it saw “dog”" in card


def test_evaluate_prints_the_most_confident_mistakes_and_the_report_lists_them_all(capsys, tmp_path):
    import torch

    from cardinal.engine.models.registry import save_model

    data = make_shapes_folder(tmp_path / "shapes", per_class=8)
    network = make_tiny_model(("blue_bars", "green_squares", "red_circles"))
    with torch.no_grad():  # it answers "blue_bars" for everything: the 16 other images are mistakes
        network.network.fc.bias[0] = 5.0
    model = save_model(network, tmp_path / "biased.safetensors")
    assert main(["evaluate", str(model), str(data), "--report", str(tmp_path / "out"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("  ") and ".png:" in line]
    assert len(listed) == 10
    shown = [float(re.search(r"\(([\d.]+)%;", line).group(1)) for line in listed]
    assert shown == sorted(shown, reverse=True)  # the most confident first
    assert f"… and 6 more, all listed in {tmp_path / 'out' / REPORT_NAME}" in out
    text, page = page_of(tmp_path / "out")
    assert "all-mistakes" in page.ids
    for kind in ("green_squares", "red_circles"):
        for number in range(8):
            assert str(data / kind / f"{number:03d}.png") in text


def recipe_rows(folder) -> dict[str, str]:
    text, _ = page_of(folder)
    section = text[text.index('<section id="recipe">'):]
    section = section[: section.index("</section>")]
    return dict(re.findall(r'<td class="name">([^<]*)</td><td class="name">([^<]*)</td>', section))


def test_a_fast_runs_recipe_lists_only_what_fast_mode_uses(trained, capsys, tmp_path):
    data, result, _ = trained  # Fast, AdamW: no augmentation, no stages to unfreeze, no momentum
    for folder in (result.out_dir, tmp_path / "again"):
        if folder != result.out_dir:  # the same run's page written again by `evaluate RUN --report`
            assert run_cli(capsys, "evaluate", result.out_dir, data, "--report", folder, "--device", "cpu")[0] == 0
        rows = recipe_rows(folder)
        assert rows["mode"] == "fast" and "lr" in rows and "label smoothing" in rows
        assert not {"augmentation", "trainable from", "momentum"} & set(rows), rows


def test_a_full_sgd_runs_recipe_lists_its_augmentation_stages_and_momentum(tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=5)
    recipe = Recipe(mode="full", epochs=1, batch_size=8, optimizer="sgd", augmentation="none", patience=None)
    result = run_to_end(train(run_to_end(scan_dataset(data)), make_tiny_model(), recipe, tmp_path / "run",
                              device="cpu"))
    rows = recipe_rows(result.out_dir)
    assert rows["augmentation"] == "none" and rows["trainable from"] == "all" and rows["momentum"] == "0.9"
