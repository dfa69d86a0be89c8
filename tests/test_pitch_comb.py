"""The pitch comb (`notono_live.models.pitch_comb`, `PriorConfig.pitch_comb`): where a pitch's
harmonics fall in the Mel rows under each position of the priors."""
from __future__ import annotations

import numpy as np
import torch

from notono_live.codemaps import BOTTOM_ORDER, TOP_ORDER
from notono_live.constants import NUM_PITCHES, PITCH_MIN
from notono_live.models import pitch_comb
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.representation import MelIF


def test_the_fundamental_lies_on_the_mel_rows_of_a_real_tone():
    """The comb's fundamental channel peaks where a sine at the pitch puts its power in the
    representation's own Mel image, for every pitch of the model's range."""
    transform = MelIF()
    profiles = pitch_comb.mel_profiles()
    assert profiles.shape == (NUM_PITCHES, 2, 1024)
    t = np.arange(64000) / 16000.0
    for index in range(0, NUM_PITCHES, 6):
        f0 = 440.0 * 2.0 ** ((PITCH_MIN + index - 69) / 12.0)
        image = transform(torch.tensor(np.sin(2 * np.pi * f0 * t), dtype=torch.float32)[None])[0]
        loudest = int(image[0, :, 40:80].mean(-1).argmax())
        assert abs(int(profiles[index, 0].argmax()) - loudest) <= 2, (index, loudest)
        # the other harmonics lie above the fundamental, none below it
        assert profiles[index, 1, :max(loudest - 4, 0)].max() < 0.05


def test_each_position_reads_the_rows_its_cells_cover():
    for layer, group, order, per_row in (("top", 1, TOP_ORDER, 32), ("bottom", 1, BOTTOM_ORDER, 16),
                                         ("bottom", 4, BOTTOM_ORDER, 16)):
        features = pitch_comb.position_features(layer, group)
        profiles = pitch_comb.mel_profiles()
        for position in (0, 5, features.shape[1] - 1):
            rows = sorted({int(order[position * group + k, 0]) for k in range(group)})
            low = rows[0] * per_row
            width = (rows[-1] + 1) * per_row - low
            expected = profiles[:, :, low:low + width].reshape(NUM_PITCHES, -1)
            assert np.array_equal(features[:, position], expected), (layer, group, position)


def _prior(cls, **extra):
    torch.manual_seed(0)
    config = PriorConfig(**{**PriorConfig.from_size("tiny").to_dict(), "unconditional": True, **extra})
    return cls(config).eval()


def test_a_comb_prior_starts_as_the_prior_without_it_and_learns_from_the_pitch():
    plain, comb = _prior(BottomPrior, bottom_group=4), _prior(BottomPrior, bottom_group=4, pitch_comb=True)
    missing, unexpected = comb.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"comb.weight", "comb.bias"} and not unexpected
    bottom, top = torch.randint(0, 512, (2, 512)), torch.randint(0, 512, (2, 128))
    pitch, family = torch.tensor([10, 40]), torch.tensor([2, 7])
    with torch.no_grad():
        assert torch.equal(comb(bottom, top, pitch, family), plain(bottom, top, pitch, family))
        comb.comb.weight.normal_(0, 0.5)
        changed = comb(bottom, top, pitch, family)
    assert not torch.allclose(changed, plain(bottom, top, pitch, family))
    # the gradient reaches the zero-initialised map
    comb.train()
    comb(bottom, top, pitch, family).logsumexp(-1).mean().backward()
    assert comb.comb.weight.grad.abs().sum() > 0


def test_rows_whose_labels_are_dropped_get_no_comb():
    prior = _prior(TopPrior, pitch_comb=True)
    with torch.no_grad():
        prior.comb.weight.normal_(0, 0.5)
        top, keep = torch.randint(0, 512, (2, 128)), torch.zeros(2, 128, dtype=torch.bool)
        family, drop = torch.tensor([3, 3]), torch.tensor([True, True])
        low = prior(top, keep, torch.tensor([0, 0]), family, drop)
        high = prior(top, keep, torch.tensor([60, 60]), family, drop)
        kept = prior(top, keep, torch.tensor([60, 60]), family)
    assert torch.equal(low, high)            # without labels the pitch cannot matter
    assert not torch.allclose(low, kept)
    condition = prior.condition(torch.tensor([7]), torch.tensor([1]))
    assert condition.shape[1] == 2 * prior.config.condition_dim + 1 and condition[0, -1] == 7
    assert prior.unconditioned(1)[0, -1] == -1
