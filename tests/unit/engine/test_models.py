"""Per-sample gradient engines against a loop of batch-size-1 backward passes."""

import numpy as np
import pytest
import torch
from torch import nn

from fairpriv_lab._core.exceptions import ConfigError, UnsupportedModelError
from fairpriv_lab.engine.models import (
    CNN,
    FuncStack,
    LinearStack,
    SeqStack,
    build_model,
    check_supported,
    transpose_rows,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")



def _reference(module_of, n_models, x, y, factors):
    """sum_i f_i * grad(loss_i) by one backward pass per sample, per model."""
    out = []
    for m in range(n_models):
        mod = module_of(m)
        acc = [torch.zeros_like(p) for p in mod.parameters()]
        norms, losses = [], []
        for i in range(x.shape[1]):
            mod.zero_grad()
            loss = nn.functional.cross_entropy(mod(x[m, i : i + 1]), y[m, i : i + 1])
            loss.backward()
            grads = [p.grad.detach().clone() for p in mod.parameters()]
            norms.append(torch.sqrt(sum(g.square().sum() for g in grads)))
            losses.append(loss.detach())
            for a, g in zip(acc, grads):
                a += factors[m, i] * g
        out.append((acc, torch.stack(norms), torch.stack(losses)))
    return out


def _check(net, params, module_of, x, y, rng_seed=0):
    n_models, B = x.shape[:2]
    gen = torch.Generator().manual_seed(rng_seed)
    bounds = torch.rand((n_models, B), generator=gen, dtype=torch.float64) * 2 + 0.05
    grads = net.per_sample(params, x, y)
    norms = grads.norms()
    factors = (bounds / norms).clamp(max=1.0)
    summed = grads.weighted_sum(factors)
    ref = _reference(module_of, n_models, x, y, factors)
    for m, (acc, ref_norms, ref_losses) in enumerate(ref):
        torch.testing.assert_close(norms[m], ref_norms, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(grads.losses[m], ref_losses, rtol=1e-5, atol=1e-9)
        for got, want in zip(summed, acc):
            got_m = got[m]
            if isinstance(net, LinearStack) and got_m.dim() == 2:
                got_m = got_m.T  # stacked weights are (in, out); nn.Linear's are (out, in)
            torch.testing.assert_close(got_m, want, rtol=1e-5, atol=1e-9)
    # Group-wise sums: factors (M, B, K) give one weighted sum per column.
    K = 3
    fk = torch.rand((n_models, B, K), generator=gen, dtype=torch.float64)
    multi = grads.weighted_sum(fk)
    for k in range(K):
        single = grads.weighted_sum(fk[..., k])
        for a, b in zip(multi, single):
            torch.testing.assert_close(a[:, k], b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sizes", [(5, 3), (5, 7, 3), (4, 6, 5, 2), (5, 2), (5, 7, 2)])
def test_linear_stack_matches_per_sample_loop(sizes):
    # (5, 2) and (5, 7, 2): two classes, the factored BinaryGrads path
    torch.manual_seed(0)
    net = LinearStack(sizes)
    assert net.binary == (sizes[-1] == 2 and len(sizes) <= 3)
    params = [p.double() for p in net.init(3, torch.Generator().manual_seed(1))]
    x = torch.randn(3, 9, sizes[0], dtype=torch.float64) * 2
    y = torch.randint(0, sizes[-1], (3, 9))
    _check(net, params, lambda m: net.to_module(params, m), x, y)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])  # digits (padded) and MNIST (28x28)
def test_cnn_matches_per_sample_loop(shape):
    net = build_model("cnn", n_features=int(np.prod(shape)), n_classes=10, image_shape=shape)
    assert isinstance(net, SeqStack)  # the batched unfold path, not vmap
    params = [p.double() for p in net.init(2, [3, 4])]
    x = torch.rand(2, 5, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 5))
    _check(net, params, lambda m: net.to_module(params, m).double(), x, y)


def test_generic_module_matches_per_sample_loop():
    def factory():
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.LayerNorm(6), nn.Linear(6, 3))

    net = build_model(factory, n_features=4, n_classes=3)
    params = [p.double() for p in net.init(2, [0, 1])]
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 6))
    _check(net, params, lambda m: net.to_module(params, m).double(), x, y)


def test_forward_shared_and_per_model_inputs_agree():
    net = LinearStack((4, 8, 3))
    params = net.init(3, torch.Generator().manual_seed(0))
    x = torch.randn(5, 4)
    shared = net.forward(params, x)
    stacked = net.forward(params, x.expand(3, 5, 4))
    torch.testing.assert_close(shared, stacked)
    for m in range(3):
        torch.testing.assert_close(shared[m], net.to_module(params, m)(x))
    cnn = build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8))
    cp = cnn.init(2, [0, 1])
    xi = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(cnn.forward(cp, xi)[1], cnn.to_module(cp, 1)(xi))


def test_cnn_shapes_for_digits_and_mnist():
    assert CNN((1, 8, 8), 10)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert CNN((1, 28, 28), 10)(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert CNN((1, 28, 28), 10).net[7].in_features == 32 * 4 * 4
    with pytest.raises(ConfigError, match="large enough for two convolutions"):
        CNN((1, 1, 1), 10)


def test_init_is_per_model_deterministic():
    net = build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8))
    a = net.init(3, [5, 6, 7])
    b = net.init(2, [6, 7])
    for ta, tb in zip(a, b):
        assert torch.equal(ta[1:], tb)
    assert not torch.equal(a[0][0], a[0][1])


def test_unsupported_layer_is_named():
    def factory():
        return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))

    with pytest.raises(UnsupportedModelError, match=r"Layer '1' \(BatchNorm1d\) is not supported"):
        build_model(factory, n_features=4, n_classes=2)
    with pytest.raises(UnsupportedModelError, match="Dropout"):
        check_supported(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))


def test_bad_model_names():
    with pytest.raises(ConfigError, match="Expected model='rnn' to be one of 'lr', 'mlp', 'cnn'"):
        build_model("rnn", n_features=4, n_classes=2)
    with pytest.raises(ConfigError, match="Expected model='cnn' only for image data"):
        build_model("cnn", n_features=4, n_classes=2)
    with pytest.raises(ConfigError, match="Expected model=3"):
        build_model(3, n_features=4, n_classes=2)
    with pytest.raises(ConfigError, match="callable returning an nn.Module"):
        FuncStack(lambda: 3, (4,), 2)


def test_parameter_count():
    assert LinearStack((10, 256, 2)).n_params == 10 * 256 + 256 + 256 * 2 + 2
    assert np.isclose(build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8)).n_params,
                      sum(p.numel() for p in CNN((1, 8, 8), 10).parameters()))


def test_layered_stack_variants_match_per_sample_loop():
    # Strided and bias-free convolutions, average pooling, ReLU, a bias-free linear layer.
    def factory():
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(4, 3, 2, padding=(1, 0)), nn.Sigmoid(), nn.Flatten(),
            nn.Linear(3 * 3 * 1, 5, bias=False), nn.Tanh(), nn.Linear(5, 4))

    net = build_model(factory, n_features=2 * 9 * 9, n_classes=4, image_shape=(2, 9, 9))
    assert isinstance(net, SeqStack)
    params = [p.double() for p in net.init(3, [0, 1, 2])]
    x = torch.randn(3, 4, 2, 9, 9, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 4))
    _check(net, params, lambda m: net.to_module(params, m).double(), x, y)
    shared = torch.randn(5, 2, 9, 9, dtype=torch.float64)
    for m in range(3):
        torch.testing.assert_close(net.forward(params, shared)[m], net.to_module(params, m).double()(shared))


def test_layered_stack_padded_pooling_and_leading_activation_match_per_sample_loop():
    # An activation before the first convolution, a padded max-pooling (no crop of the grid),
    # ReLU before a pooling, a convolution whose output is flattened as it is (no pooling),
    # two activations in a row (the first one's output is kept for its backward).
    def factory():
        return nn.Sequential(
            nn.Tanh(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(4, 2, 2, stride=(1, 2)), nn.Flatten(), nn.Linear(2 * 3 * 2, 5), nn.Tanh(),
            nn.Sigmoid(), nn.Linear(5, 3))

    net = build_model(factory, n_features=3 * 9 * 10, n_classes=3, image_shape=(3, 9, 10))
    assert isinstance(net, SeqStack)
    params = [p.double() for p in net.init(2, [5, 6])]
    x = torch.randn(2, 6, 3, 9, 10, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 6))
    _check(net, params, lambda m: net.to_module(params, m).double(), x, y)


def test_pooling_crop_skips_only_unread_rows():
    # The digits CNN's second convolution (5x5 map, 2x2 pooling) is computed on 4x4 positions.
    net = build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8))
    convs = [op for op in net._ops if op.kind == "conv"]
    assert [op.shape_out for op in convs] == [(8, 8, 16), (4, 4, 32)]


def test_linear_before_flatten_falls_back_to_torch_func():
    def factory():  # a Linear applied to the last axis of an image: not a layered stack
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 3), nn.Flatten(), nn.Linear(2 * 4 * 3, 2))

    net = build_model(factory, n_features=36, n_classes=2, image_shape=(1, 6, 6))
    assert type(net) is FuncStack


def test_unsupported_stacks_fall_back_to_torch_func():
    def norm():
        return nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3))

    def dilated():
        return nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))

    assert type(build_model(norm, n_features=4, n_classes=3)) is FuncStack
    assert type(build_model(dilated, n_features=64, n_classes=3, image_shape=(1, 8, 8))) is FuncStack


def _one_hot_records(gen, n=40, d=12):
    """One-hot-like records: two categorical columns one-hot over 5 + 6 levels and one numeric."""
    X = torch.zeros(n, d)
    X[torch.arange(n), torch.randint(0, 5, (n,), generator=gen)] = 1.0
    X[torch.arange(n), 5 + torch.randint(0, 6, (n,), generator=gen)] = 1.0
    X[:, 11] = torch.randn(n, generator=gen)
    return X


def test_sparse_first_layer_matches_dense_and_per_sample_loop():
    gen = torch.Generator().manual_seed(3)
    n, d = 40, 12
    X = _one_hot_records(gen, n, d)
    net = LinearStack((d, 20, 3))
    cols, vals = net.sparse_first_layer(X)
    assert cols.shape == (n, 3) and cols.dtype == torch.int32
    assert bool((cols[:, 1:] > cols[:, :-1]).all())  # increasing columns, as the dense sum
    torch.testing.assert_close(vals, X.gather(1, cols.long()), rtol=0, atol=0)
    # no sparse rows for dense data, few outputs (LR) or float64
    assert net.sparse_first_layer(torch.randn(n, d)) is None
    assert LinearStack((d, 3)).sparse_first_layer(X) is None
    assert net.sparse_first_layer(X.double()) is None

    M, B = 3, 9
    idx = torch.randint(0, n, (M, B), generator=gen)
    y = torch.randint(0, 3, (M, B), generator=gen)
    sparse = (cols[idx] + (torch.arange(M) * d).view(-1, 1, 1), vals[idx])
    params = net.init(M, torch.Generator().manual_seed(1))
    dense_g = net.per_sample(params, X[idx], y)
    sparse_g = net.per_sample(params, X[idx], y, sparse=sparse)
    torch.testing.assert_close(sparse_g.losses, dense_g.losses, rtol=1e-6, atol=1e-7)
    for a, b in zip(sparse_g.deltas, dense_g.deltas):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    class Sparse(LinearStack):  # the sparse path, in float64, against the slow per-sample loop
        def per_sample(self, p, x, yy):
            return super().per_sample(p, x, yy, sparse=(sparse[0], sparse[1].double()))

    p64 = [p.double() for p in params]
    _check(Sparse(net.sizes), p64, lambda m: net.to_module(p64, m), X[idx].double(), y)


@pytest.mark.parametrize("hidden", [(), (20,)])
def test_two_class_sparse_paths_match_dense_and_per_sample_loop(hidden):
    # Two classes: LR and the MLP take BinaryGrads. LR on sparse rows reads no dense input; the
    # MLP's first-layer clipped sum runs over the transposed rows (transpose_rows), with or
    # without a batch mask, or through the dense matmul when only (cols, vals) come with x.
    gen = torch.Generator().manual_seed(4)
    n, d = 40, 12
    X = _one_hot_records(gen, n, d)
    X[3, 11] = 0.0  # a record with fewer nonzeros: its padding has value 0
    net = LinearStack((d, *hidden, 2))
    assert net.binary
    cols, vals = net.sparse_first_layer(X)
    assert not net.dense_input_needed(True) and net.dense_input_needed(False)
    M, B = 3, 9
    idx = torch.randint(0, n, (M, B), generator=gen)
    idx[1, 0] = 3
    y = torch.randint(0, 2, (M, B), generator=gen)
    rows = (cols[idx] + (torch.arange(M, dtype=torch.int32) * d).view(-1, 1, 1), vals[idx])
    mask = torch.ones(M, B)
    mask[0, 6:] = 0  # padding of a Poisson batch
    mask[2, 8:] = 0
    x_sq = X[idx].square().sum(-1)
    params = net.init(M, torch.Generator().manual_seed(1))
    dense_g = net.per_sample(params, X[idx], y)
    f = torch.rand((M, B), generator=gen) * mask
    want = dense_g.weighted_sum(f)
    variants = [(None, rows), (None, transpose_rows(*rows, mask, d)), (None, transpose_rows(*rows, None, d))]
    if hidden:
        variants.append((X[idx], rows))  # the dense matmul for the clipped sum
    for x, sparse in variants:
        got = net.per_sample(params, x, y, sparse=sparse, x_sq=x_sq)
        torch.testing.assert_close(got.losses, dense_g.losses, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got.norms(), dense_g.norms(), rtol=1e-6, atol=1e-7)
        for a, b in zip(got.weighted_sum(f), want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        # the first two models, as the training loop's telemetry takes them
        for a, b in zip(got.head(2).weighted_sum(f[:2]), want):
            torch.testing.assert_close(a, b[:2], rtol=1e-5, atol=1e-6)
    # a chunk of models of the transposed rows equals the rows of that chunk, transposed
    full = transpose_rows(*rows, mask, d)
    part = full.models(1, 3, d)
    alone = transpose_rows(rows[0][1:3] - d, rows[1][1:3], mask[1:3], d)
    for a, b in zip(part, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    class Sparse(LinearStack):  # the sparse paths, in float64, against the slow per-sample loop
        def per_sample(self, p, x, yy):
            sp = transpose_rows(rows[0], rows[1].double(), None, d)
            return super().per_sample(p, None, yy, sparse=sp, x_sq=x.square().sum(-1))

    p64 = [p.double() for p in params]
    _check(Sparse(net.sizes), p64, lambda m: net.to_module(p64, m), X[idx].double(), y)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_lanewise_gives_every_element_the_same_bits_wherever_it_lies(threads):
    # torch's sigmoid / log1p give other last bits in their scalar tail than in the vector loop;
    # through _lanewise a value does not depend on the tensor's size or its place in it.
    from fairpriv_lab.engine.models import _lanewise

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(150_000, generator=torch.Generator().manual_seed(0)) * 4
        for fn, arg in ((torch.sigmoid, x), (torch.log1p, x.abs())):
            pieces = torch.cat([_lanewise(fn, arg[i:i + 999].clone()) for i in range(0, arg.numel(), 999)])
            whole = _lanewise(fn, arg.clone())
            assert torch.equal(whole, pieces)
            assert torch.equal(_lanewise(fn, arg[:70_001].clone()), whole[:70_001])
            out = torch.empty_like(arg)
            assert torch.equal(_lanewise(fn, arg, out), whole)
            torch.testing.assert_close(whole, fn(arg), rtol=2e-7, atol=0)  # the same function
    finally:
        torch.set_num_threads(before)


def test_cnn_ghost_norms_by_im2col_gram_match_per_sample_loop(monkeypatch):
    # Without the pixel-Gram map the digits CNN's second convolution takes the im2col Gram.
    import fairpriv_lab.engine.models as models

    monkeypatch.setattr(models, "_pixel_gram_map", lambda op: None)
    net = build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8))
    params = [p.double() for p in net.init(2, [3, 4])]
    grads = net.per_sample(params, torch.rand(2, 5, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (2, 5)))
    assert [p.mode for p in grads.pieces if not isinstance(p, tuple)] == ["psg", "ghost"]
    assert all(p.pixel_map is None for p in grads.pieces if not isinstance(p, tuple))
    x = torch.rand(2, 5, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 5))
    _check(net, params, lambda m: net.to_module(params, m).double(), x, y)


@pytest.mark.parametrize("layer, hw", [
    (nn.Conv2d(3, 2, 4, padding=2), (4, 4)),  # the digits CNN's second convolution, padded
    (nn.Conv2d(2, 3, 3, stride=2, padding=1), (3, 4)),
    (nn.Conv2d(4, 2, (2, 3), stride=(1, 2)), (4, 5)),
])
def test_pixel_gram_map_gives_the_patch_gram(layer, hw):
    from fairpriv_lab.engine.models import _compile, _pixel_gram_map

    C, (H, W) = layer.in_channels, hw
    ops = _compile([layer, nn.Flatten()], (C, H, W))
    A = _pixel_gram_map(ops[0])
    assert A is not None
    x = torch.randn(3, C, H, W, dtype=torch.float64)
    U = nn.functional.unfold(x, layer.kernel_size, padding=layer.padding, stride=layer.stride)  # (3, C k k, P)
    want = U.transpose(1, 2) @ U  # (3, P, P), the reference from torch's own im2col
    X = x.flatten(2).transpose(1, 2)  # (3, H W, C)
    got = (X @ X.transpose(1, 2)).flatten(1) @ torch.from_numpy(A)
    torch.testing.assert_close(got.view_as(want), want, rtol=1e-12, atol=1e-12)


def test_pixel_gram_map_only_where_it_costs_less():
    from fairpriv_lab.engine.models import _compile, _pixel_gram_map

    # more pixels (30) than values in a patch (18): the im2col Gram is cheaper
    ops = _compile([nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Flatten()], (2, 5, 6))
    assert _pixel_gram_map(ops[0]) is None


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_cnn_results_of_a_model_do_not_depend_on_its_chunk(shape):
    # oneDNN runs an ungrouped convolution (a chunk of one model) with other kernels than a
    # grouped one: the engine runs one group as two, so every model gets the same bits alone.
    net = build_model("cnn", n_features=int(np.prod(shape)), n_classes=10, image_shape=shape)
    params = net.init(3, [0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 7, *shape, generator=gen)
    y = torch.randint(0, 10, (3, 7), generator=gen)
    f = torch.rand(3, 7, generator=gen)
    full = net.per_sample(params, x, y)
    norms, summed, logits = full.norms(), full.weighted_sum(f), net.forward(params, x)
    for m in range(3):
        one = [p[m:m + 1] for p in params]
        g = net.per_sample(one, x[m:m + 1], y[m:m + 1])
        assert torch.equal(g.norms()[0], norms[m])
        assert all(torch.equal(a[0], b[m]) for a, b in zip(g.weighted_sum(f[m:m + 1]), summed))
        assert torch.equal(net.forward(one, x[m:m + 1])[0], logits[m])


def test_cnn_single_sample_batches_agree_with_larger_chunks():
    # one model and one sample (1 group, 1 Gram row: MKL's small-matrix kernels) against 5 models
    net = build_model("cnn", n_features=64, n_classes=10, image_shape=(1, 8, 8))
    params = net.init(5, [0, 1, 2, 3, 4])
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (5, 1), generator=gen)
    full = net.per_sample(params, x, y)
    norms, summed = full.norms(), full.weighted_sum(torch.ones(5, 1))
    for m in range(5):
        g = net.per_sample([p[m:m + 1] for p in params], x[m:m + 1], y[m:m + 1])
        assert torch.equal(g.norms()[0], norms[m])
        assert all(torch.equal(a[0], b[m]) for a, b in zip(g.weighted_sum(torch.ones(1, 1)), summed))
