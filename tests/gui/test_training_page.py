"""The training page says what the engine measured; it never re-derives it."""

from cardinal.engine.training.events import BatchEnd
from cardinal.gui.wizard.training_page import batch_line


def test_throughput_and_time_left_are_the_engine_s_own():
    # After an out-of-memory halving the batch size is 16, not the recipe's 32: only the engine knows.
    event = BatchEnd(epoch=2, batch=3, batches=40, loss=0.7, lr=1e-3, images_per_second=37.4, eta_seconds=610)
    assert batch_line(event, 5, None) == "Epoch 2 of 5, batch 3 of 40: 37 images/s, about 10 min left"
    assert batch_line(event, 5, "81.2% (95% interval 70-89%)").endswith(
        "left; last validation accuracy 81.2% (95% interval 70-89%)")
