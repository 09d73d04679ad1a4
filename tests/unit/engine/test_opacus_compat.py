"""GroupDPOptimizer: DP-SGD-S / DP-SGD-F on an ordinary nn.Module through Opacus."""

import math

import pytest
import torch
from torch import nn

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.engine.models import LinearStack
from fairpriv_lab.engine.privacy import DPSGDF, DPSGDS, DPStep, as_method, epsilon_of

pytestmark = [
    pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
    pytest.mark.usefixtures("torch_one_thread"),
]


def _setup():
    net = LinearStack((5, 8, 2))
    params = net.init(1, torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    x = torch.randn(12, 5) * 2
    y = torch.randint(0, 2, (12,))
    g = torch.tensor([0] * 8 + [1] * 4)
    return net, params, x, y, g


@pytest.mark.parametrize("policy", ["dpsgd", DPSGDS(tau=3.0, stat_clip=5.0), DPSGDF(),
                                    DPSGDS(statistic="mean_direction")])
def test_single_model_optimizer_equals_ensemble_step(policy):
    from opacus import GradSampleModule

    from fairpriv_lab.engine.opacus_bridge import GroupDPOptimizer

    net, params, x, y, g = _setup()
    lr, C, b = 0.3, 0.5, 10
    # sigma = 0 makes the statistics' noise 0 too (multipliers are tied): deterministic.
    step = DPStep(as_method(policy),
                  clip=C, noise_multiplier=0.0, batch_size=float(b), n_groups=2)
    pol = step.policy
    pnoise = {k: ([torch.zeros_like(t) for t in v] if isinstance(v, list) else torch.zeros_like(v))
              for k, v in pol.draw_noise(1, 2, net.param_shapes(), torch.Generator(), "cpu").items()}
    out = step(net.per_sample(params, x[None], y[None]), groups=g[None], mask=torch.ones(1, 12),
               policy_noise=pnoise, state=pol.initial_state(1, 2, C, "cpu"))
    want = net.to_module([p - lr * u for p, u in zip(params, out.update)], 0)

    model = GradSampleModule(net.to_module(params, 0))
    opt = GroupDPOptimizer(torch.optim.SGD(model.parameters(), lr=lr), policy=policy, n_groups=2,
                           noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=b)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.set_groups(g)
    opt.step()
    for a, w in zip(model.parameters(), want.parameters()):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt.last_bounds, out.group_bounds[0])


def test_noise_scale_and_accounting():
    from opacus import GradSampleModule

    from fairpriv_lab.engine.opacus_bridge import GroupDPOptimizer

    net, params, x, y, g = _setup()
    model = GradSampleModule(net.to_module(params, 0))
    pol = DPSGDS(tau=2.0)
    opt = GroupDPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), policy=pol, n_groups=3,
                           noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=10,
                           sample_rate=0.05, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.set_groups(g)
        opt.step()
    assert opt.steps == 3
    assert opt._noise_bound == pytest.approx(float(opt.last_bounds.max()))
    assert opt.get_epsilon(1e-5) == pytest.approx(
        epsilon_of(1.0, sample_rate=0.05, steps=3, delta=1e-5, method=pol))
    assert math.isinf(GroupDPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), policy="dpsgd",
                                       n_groups=1, noise_multiplier=0.0, max_grad_norm=1.0,
                                       expected_batch_size=4, sample_rate=0.1).get_epsilon(1e-5))


def test_missing_groups_is_a_clear_error():
    from opacus import GradSampleModule

    from fairpriv_lab.engine.opacus_bridge import GroupDPOptimizer

    net, params, x, y, g = _setup()
    model = GradSampleModule(net.to_module(params, 0))
    opt = GroupDPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), policy=DPSGDF(), n_groups=2,
                           noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=10)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ConfigError, match="Expected groups=None to be set with set_groups"):
        opt.step()
    with pytest.raises(ConfigError, match="Expected sample_rate=None"):
        opt.get_epsilon(1e-5)
