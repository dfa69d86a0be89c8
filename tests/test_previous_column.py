"""The bottom prior's previous-column input (`PriorConfig.previous_column`).

Each bottom cell's prediction also gets the code of the same band half a second earlier. It must
read exactly that cell (never the cell itself or a later one). That the KV-cached step computes
what the teacher-forced pass computes, with one cell per step and with groups, and that the
samplers draw alike, is tested with the groups (`test_group_head.py`); the compiled step in
`test_compiled_step.py`.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from notono_live import codemaps
from notono_live.models.bundle import NotonoModel
from notono_live.models.priors import BottomPrior, PriorConfig, previous_column_index, previous_column_inputs


def prior_with_previous_column(group: int = 1, cross_attention: bool = False) -> BottomPrior:
    torch.manual_seed(0)
    config = dataclasses.replace(PriorConfig.from_size("tiny"), previous_column=True, bottom_group=group,
                                 unconditional=True, label_layers=True, bottom_cross_attention=cross_attention)
    prior = BottomPrior(config).eval()
    with torch.no_grad():   # these start at zero; give them weights so that they matter here
        prior.label_modulation.weight.normal_(0, 0.2)
        if prior.group_head is not None:
            prior.group_head.earlier.weight.normal_(0, 0.3)
    return prior


def inputs(rows: int = 3):
    generator = torch.Generator().manual_seed(1)
    return (torch.randint(0, 512, (rows, 512), generator=generator),
            torch.randint(0, 512, (rows, 128), generator=generator),
            torch.tensor([3, 20, 40][:rows]), torch.tensor([0, 5, 10][:rows]))


def test_each_cell_reads_its_band_one_column_earlier():
    index = previous_column_index().tolist()
    order = codemaps.BOTTOM_ORDER.tolist()
    for position, (row, column) in enumerate(order):
        if column == 0:
            assert index[position] == -1
        else:
            assert index[position] < position and order[index[position]] == [row, column - 1]


@pytest.mark.parametrize("group", [1, 2, 4])
def test_a_step_reads_the_previous_cells_that_come_before_its_group(group):
    index = previous_column_index()
    inputs = previous_column_inputs(group)
    assert inputs.shape == (512 // group, group)
    for position, cells in enumerate(inputs.tolist()):
        for slot, cell in enumerate(cells):
            wanted = int(index[position * group + slot])
            assert cell == (wanted if wanted < position * group else -1)
    if group == 4:   # the last two cells' previous cells are the group's first two
        assert (inputs[:, 2:] == -1).all() and (inputs[32:, :2] >= 0).all()


@pytest.mark.parametrize("group", [1, 4])
def test_the_input_carries_exactly_the_previous_columns_code(group):
    """Changing what the embedding says of one code changes the logits of the first cell whose
    previous-column cell holds that code, and of no cell before it."""
    prior = prior_with_previous_column(group)
    bottom, top, pitch, family = inputs(1)
    index = previous_column_index()
    first = next(p for p in range(512) if index[p] >= 0 and p % group == 0)   # first cell of a group
    code = int(bottom[0, index[first]])
    bottom[0, index[:first][index[:first] >= 0]] = (code + 1) % 512   # no earlier cell reads that code
    with torch.inference_mode():
        before = prior(bottom, top, pitch, family)
        prior.previous_column_embedding.weight[code] += 1.0
        after = prior(bottom, top, pitch, family)
    assert torch.equal(before[:, :first], after[:, :first])
    assert not torch.allclose(before[:, first], after[:, first])


@pytest.mark.parametrize("group", [1, 4])
def test_a_cell_never_reads_its_own_or_later_cells(group):
    prior = prior_with_previous_column(group)
    bottom, top, pitch, family = inputs()
    for position in (0, 33, 130, 511):
        changed = bottom.clone()
        changed[:, position] = (bottom[:, position] + 7) % 512
        with torch.inference_mode():
            before, after = prior(bottom, top, pitch, family), prior(changed, top, pitch, family)
        assert torch.equal(before[:, :position + 1], after[:, :position + 1])


def test_a_model_with_the_previous_column_generates_saves_and_loads(tmp_path):
    model = NotonoModel.untrained("tiny")
    model.bottom_prior = prior_with_previous_column().to(model.device)
    model.set_step_precision("auto")
    assert model.info()["size"] == "tiny"   # an added input, not another size
    model.save(tmp_path / "model")
    loaded = NotonoModel.load(tmp_path / "model")
    assert loaded.bottom_prior.config.previous_column
    first = [m.bottom.tolist() for m in loaded.generate(pitch=48, family="organ", n=2, seed=5)]
    again = [m.bottom.tolist() for m in NotonoModel.load(tmp_path / "model").generate(pitch=48, family="organ",
                                                                                      n=2, seed=5)]
    assert first == again and len(first) == 2


@pytest.mark.parametrize("group", [1, 4])
def test_added_to_a_trained_prior_it_starts_as_that_prior(group):
    """`train priors --init-from … --previous-column` adds it at zero."""
    from notono_live.training.priors import _add_previous_column

    torch.manual_seed(0)
    prior = BottomPrior(dataclasses.replace(PriorConfig.from_size("tiny"), bottom_group=group)).eval()
    added = _add_previous_column(prior).eval()
    bottom, top, pitch, family = inputs(2)
    with torch.inference_mode():
        assert torch.equal(added(bottom, top, pitch, family), prior(bottom, top, pitch, family))
    assert added.config.previous_column and added.previous_column_embedding is not None
