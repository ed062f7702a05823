"""Per-sample loss gradients, streamed in batches with bounded memory.

Three ways to the same numbers, from cheapest to most general:

* **Last layer, closed form** (:func:`forward_pass` + :func:`last_layer_norms`). For the head
  ``z = W h + b`` and cross-entropy, the per-sample gradient is ``g = (p - e_y) [h, 1]^T``, so
  ``||g||_2 = ||p - e_y||_2 ||[h, 1]||_2`` and ``||g||_1 = 2 (1 - p_y) (||h||_1 + 1)``: one forward
  pass, no autograd. ``e_y`` is the one-hot of the GIVEN label.
* **All layers** (:func:`all_layer_norms`): one forward and one backward per batch with hooks that
  keep each layer's input ``a`` and output gradient ``b``. A layer's per-sample weight gradient is
  ``sum_t b_t a_t^T`` over positions ``t``; its squared norm is either the "ghost norm"
  ``sum_{t,s} (a_t.a_s)(b_t.b_s)`` (cheap when there are few positions) or the squared norm of the
  materialised ``(dout, din)`` matrix (cheap when there are many), chosen per layer. L1 norms need
  the materialised matrix. Parameters are frozen during the pass, so autograd computes no weight
  gradients at all: the hooks replace them.
* **torch.func reference** (:func:`per_sample_gradients_vmap`): ``vmap(grad(loss))`` over every
  parameter, exact and memory-hungry; the tests check the two paths above against it, and
  :func:`per_sample_gradients_loop` is the paper's one-sample-at-a-time autograd loop.

Models run in eval mode throughout: with BatchNorm in train mode a sample's gradient depends on
the rest of its batch, so "the gradient of sample i" is only defined with running statistics.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oga_core import options
from oga_core.errors import OgaError
from oga_core.lastlayer import last_layer_norms
from oga_core.models import Classifier
from oga_core.pixels import Pixels
from oga_core.progress import Progress
from oga_core.train import rows, to_float

# Cap, in floats, on a materialised per-sample gradient block (samples x layer parameters).
_MATERIALIZE_BUDGET = 1 << 24
# Width of the all-layer gradient sketch the Isolation Forest sees.
SKETCH_DIMS = 1024


@dataclass
class ForwardOutputs:
    """features: float32 ``(N, D)`` inputs of the head; logits: float32 ``(N, K)``."""

    features: np.ndarray
    logits: np.ndarray


@dataclass
class GradientStats:
    """Per-sample gradient summaries of one model on one labelled data set.

    features ``(N, D)`` and logits ``(N, K)`` come from the same pass. l1, l2 ``(N,)`` are the
    norms of the loss gradient over the scope's parameters (``last``: the head's weight and bias;
    ``all``: every trainable parameter). layer_l2 ``(N, L)`` holds each layer's own L2 norm for
    ``all``, with names in layer_names; sketch ``(N, k)`` is a count sketch of the whole
    per-sample gradient (``all`` only), the Isolation Forest's input.
    """

    scope: str
    features: np.ndarray
    logits: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    layer_l2: np.ndarray | None = None
    layer_names: list[str] = field(default_factory=list)
    sketch: np.ndarray | None = None

    def check_finite(self, ids: list[str]) -> None:
        """OgaError naming the first array with NaN or infinite values (a diverged model gives
        NaN logits, and a ranking of NaN scores would flag arbitrary samples)."""
        for name, values in (("logits", self.logits), ("features", self.features), ("gradient L2 norms", self.l2)):
            bad = ~np.isfinite(values).reshape(len(values), -1).all(1)
            if bad.any():
                first = ids[int(np.flatnonzero(bad)[0])]
                raise OgaError(
                    f"the model's {name} are not finite (NaN or infinity) for {int(bad.sum())} of {len(bad)} "
                    f"samples (first: {first}): the model diverged or its weights are broken; retrain with a "
                    "lower learning rate or load another checkpoint"
                )


class _Rows:
    """Per-batch results copied into one array of ``n`` rows, allocated at the first batch.

    Why not a list of batch tensors joined at the end: each small kept tensor sits between the
    freed activations of its batch and pins them in the allocator's heap, so resident memory grew
    by 47 KB per sample with the cnn (4.5 GB at 100,000 samples for 0.5 KB of features each).
    """

    def __init__(self, n: int, dtype: type = np.float32) -> None:
        self.n, self.dtype = n, dtype
        self.array: np.ndarray | None = None

    def put(self, lo: int, batch: torch.Tensor) -> None:
        values = batch.detach().cpu().numpy()
        if self.array is None:
            self.array = np.empty((self.n, *values.shape[1:]), dtype=self.dtype)
        self.array[lo : lo + len(values)] = values

    def result(self) -> np.ndarray:
        return self.array if self.array is not None else np.empty((0, 0), dtype=self.dtype)


# -- last layer ------------------------------------------------------------------------------
@torch.no_grad()
def forward_pass(
    model: Classifier,
    pixels: Pixels,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> ForwardOutputs:
    """One inference pass over uint8 ``pixels (N, C, H, W)``: head inputs and logits."""
    device = torch.device(device)
    model.eval().to(device)
    n = len(pixels)
    feats, logits = _Rows(n), _Rows(n)
    for lo in range(0, n, batch_size):
        h = model.features(to_float(rows(pixels, slice(lo, lo + batch_size)), device))
        feats.put(lo, h.float())
        logits.put(lo, model.head(h).float())
        if progress:
            progress(min(lo + batch_size, n), n)
    return ForwardOutputs(feats.result(), logits.result())


# -- all layers ------------------------------------------------------------------------------
_SUPPORTED = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


def _param_layers(model: nn.Module) -> list[tuple[str, nn.Module, bool, bool]]:
    """The modules that own trainable parameters; OgaError for a kind the hooks cannot handle."""
    layers = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, _SUPPORTED):
            raise OgaError(
                f"all-layer gradients support Linear, Conv2d and BatchNorm layers; "
                f"'{name}' is a {type(module).__name__} (use scope 'last')"
            )
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            raise OgaError(f"all-layer gradients need zero padding; '{name}' pads with {module.padding_mode}")
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not module.track_running_stats:
            raise OgaError(f"'{name}' has no running statistics, so per-sample gradients are not defined")
        trainable = {id(p) for p in own}
        layers.append((name, module, id(module.weight) in trainable, id(getattr(module, "bias", None)) in trainable))
    return layers


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            if (d * (k - 1)) % 2:
                raise OgaError("all-layer gradients do not support padding='same' with an even kernel")
            pads.append(d * (k - 1) // 2)
        return (pads[0], pads[1])
    return conv.padding  # type: ignore[return-value]


class CountSketch:
    """A seeded count sketch: ``g (B, P) -> (B, dims)`` with each coordinate added, with a random
    sign, to one random bucket. Inner products are kept in expectation (Charikar et al. 2002), at
    O(P) cost and with no ``(P, dims)`` matrix, so a gradient of millions of entries fits."""

    def __init__(self, dims: int, *, seed: int = 0) -> None:
        self.dims = dims
        self.seed = seed
        self._hashes: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, out: torch.Tensor, key: str, block: torch.Tensor) -> None:
        """``out (B, dims) += sketch(block (B, P))``; ``key`` names the parameter (same key, same hash)."""
        size = block.shape[1]
        hashed = self._hashes.get((key, size))
        if hashed is None or hashed[0].device != block.device:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(key.encode()))
            idx = torch.randint(0, self.dims, (size,), generator=gen)
            sign = torch.randint(0, 2, (size,), generator=gen).float().mul_(2).sub_(1)
            hashed = self._hashes[(key, size)] = (idx.to(block.device), sign.to(block.device, block.dtype))
        out.index_add_(1, hashed[0], block * hashed[1])


class _LayerAccumulator:
    """Squared L2 and L1 norms ``(B,)`` of one layer's per-sample gradient, fed block by block;
    blocks also go into the shared sketch when there is one."""

    def __init__(
        self, name: str, bsz: int, device: torch.device, *, want_l1: bool, sketch: CountSketch | None, sketch_out
    ):
        self.name, self.want_l1, self.sketch, self.sketch_out = name, want_l1, sketch, sketch_out
        self.sq = torch.zeros(bsz, device=device)
        self.l1 = torch.zeros(bsz, device=device)

    @property
    def needs_blocks(self) -> bool:
        return self.want_l1 or self.sketch is not None

    def add(self, part: str, block: torch.Tensor, lo: int = 0) -> None:
        """``block (b, P)``: the per-sample gradients of samples ``lo .. lo + b`` for one parameter."""
        hi = lo + block.shape[0]
        self.sq[lo:hi] += block.pow(2).sum(1)
        if self.want_l1:
            self.l1[lo:hi] += block.abs().sum(1)
        if self.sketch is not None:
            self.sketch.add(self.sketch_out[lo:hi], f"{self.name}.{part}", block)


def _weight_grads(a: torch.Tensor, b: torch.Tensor, stats: _LayerAccumulator, lo: int = 0) -> None:
    """Feed the per-sample gradients ``sum_t b_t a_t^T`` of ``a (B, G, T, din)``, ``b (B, G, T, dout)``
    (G groups; samples ``lo .. lo + B`` of the batch) into ``stats``, by the cheapest exact route."""
    bsz, groups, t, din = a.shape
    dout = b.shape[3]
    rows = slice(lo, lo + bsz)
    if t == 1 and not stats.sketch:  # an outer product: both norms factorise exactly
        sa, sb = a.pow(2).sum(3), b.pow(2).sum(3)
        stats.sq[rows] += (sa * sb).sum((1, 2))
        if stats.want_l1:
            stats.l1[rows] += (a.abs().sum(3) * b.abs().sum(3)).sum((1, 2))
        return
    if not stats.needs_blocks and t * t <= din * dout:
        # ghost norm: <G, G> = sum_{t,s} (a_t . a_s)(b_t . b_s), no (dout, din) matrix formed
        stats.sq[rows] += (a @ a.transpose(2, 3) * (b @ b.transpose(2, 3))).sum((1, 2, 3))
        return
    chunk = max(1, _MATERIALIZE_BUDGET // (groups * din * dout))
    for s in range(0, bsz, chunk):
        g = b[s : s + chunk].transpose(2, 3) @ a[s : s + chunk]  # (c, G, dout, din)
        stats.add("weight", g.flatten(1), lo + s)


def _feed_layer(
    module: nn.Module, x: torch.Tensor, gout: torch.Tensor, *, weight: bool, bias: bool, stats: _LayerAccumulator
) -> None:
    """One layer's per-sample gradient over its trainable parameters (``weight`` and/or ``bias``):
    ``x`` is the layer's input, ``gout`` its output's gradient."""
    bsz = x.shape[0]
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xhat = (x - module.running_mean.view(shape)) / torch.sqrt(module.running_var.view(shape) + module.eps)
        dims = tuple(range(2, x.dim()))
        if weight:
            stats.add("weight", (gout * xhat).sum(dims) if dims else gout * xhat)
        if bias:
            stats.add("bias", gout.sum(dims) if dims else gout)
        return
    if isinstance(module, nn.Linear):
        t, din = x[0].numel() // x.shape[-1], x.shape[-1]
    else:
        conv: nn.Conv2d = module  # type: ignore[assignment]
        t, din = gout[0, 0].numel(), x.shape[1] * conv.kernel_size[0] * conv.kernel_size[1]
    # Samples a few at a time: an unfolded conv input (T x Cin*k*k) or a ghost Gram matrix (T x T)
    # per sample would otherwise double the memory of the pass (ResNet-18's first stage: 300 MB).
    budget = _MATERIALIZE_BUDGET * (8 if x.is_cuda else 1)  # big batched kernels pay off on a GPU
    chunk = max(1, budget // (t * max(din, 2 * t)))
    for lo in range(0, bsz, chunk):
        xs, gs = x[lo : lo + chunk], gout[lo : lo + chunk]
        n = xs.shape[0]
        if isinstance(module, nn.Linear):
            a = xs.reshape(n, 1, -1, xs.shape[-1])
            b = gs.reshape(n, 1, -1, gs.shape[-1])
        else:  # Conv2d: unfold the input into (n, T, Cin*kh*kw) patches, split by group
            cols = F.unfold(
                xs, conv.kernel_size, dilation=conv.dilation, padding=_conv_padding(conv), stride=conv.stride
            )
            g = conv.groups
            a = cols.view(n, g, -1, t).transpose(2, 3)
            b = gs.flatten(2).view(n, g, -1, t).transpose(2, 3)
        if weight:
            _weight_grads(a, b, stats, lo)
        if bias:
            stats.add("bias", b.sum(2).flatten(1), lo)


def all_layer_norms(
    model: Classifier,
    pixels: Pixels,
    labels: np.ndarray,
    *,
    want_l1: bool = True,
    sketch_dims: int = 0,
    seed: int = 0,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> GradientStats:
    """Per-sample gradient norms over every trainable parameter, one backward per batch.

    Memory is that of one training step at ``batch_size`` plus, per layer, at most
    ``_MATERIALIZE_BUDGET`` floats. With ``want_l1=False`` and no sketch every layer uses
    whichever of the ghost norm or the materialised gradient is cheaper; L1 norms and the
    ``sketch_dims``-wide count sketch of the whole gradient (``GradientStats.sketch``, the
    Isolation Forest's input) need the materialised gradient, one layer and a few samples at a time.
    """
    device = torch.device(device)
    model.eval().to(device)
    layers = _param_layers(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    sketch = CountSketch(sketch_dims, seed=seed) if sketch_dims else None
    # Per batch: each layer's stats, filled by its gradient hook DURING the backward pass, so a
    # layer's output gradient is used and dropped at once (holding every layer's until the end
    # would double the pass's memory).
    done: dict[str, _LayerAccumulator] = {}
    seen: set[str] = set()

    def make_hook(name: str, weight: bool, bias: bool):
        def hook(module, inputs, output):
            if name in seen:
                raise OgaError(f"layer '{name}' runs twice in one forward pass; use scope 'last'")
            seen.add(name)
            a = inputs[0].detach()

            def grad_hook(g):
                with torch.no_grad():
                    stats = _LayerAccumulator(
                        name,
                        len(a),
                        a.device,
                        want_l1=want_l1,
                        sketch=sketch,
                        sketch_out=torch.zeros(len(a), sketch_dims, device=a.device) if sketch else None,
                    )
                    _feed_layer(module, a, g.detach(), weight=weight, bias=bias, stats=stats)
                done[name] = stats

            output.register_hook(grad_hook)

        return hook

    handles = [module.register_forward_hook(make_hook(name, w, b)) for name, module, w, b in layers]
    n = len(pixels)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    feats, logits_out = _Rows(n), _Rows(n)
    l1_out, layer_sq_out, sketch_out = _Rows(n, np.float64), _Rows(n, np.float64), _Rows(n)
    try:
        for p in trainable:  # the hooks produce the per-sample gradients; autograd need not
            p.requires_grad_(False)
        for lo in range(0, n, batch_size):
            done.clear()
            seen.clear()
            x = to_float(rows(pixels, slice(lo, lo + batch_size)), device).requires_grad_(True)
            y = y_all[lo : lo + batch_size].to(device)
            with torch.enable_grad():
                h = model.features(x)
                logits = model.head(h)
                F.cross_entropy(logits, y, reduction="sum").backward()
            # sums in the layers' forward order, whatever order the backward pass visited them in
            zero = torch.zeros(len(y), device=device)
            parts = [done.get(name) for name, *_ in layers]
            layer_sq = [p.sq if p is not None else zero for p in parts]
            total_l1 = zero.clone()
            sketch_batch = torch.zeros(len(y), sketch_dims, device=device) if sketch else None
            for part in parts:
                if part is not None:
                    total_l1 += part.l1
                    if sketch_batch is not None:
                        sketch_batch += part.sketch_out
            feats.put(lo, h.float())
            logits_out.put(lo, logits.float())
            layer_sq_out.put(lo, torch.stack(layer_sq, 1).double())
            l1_out.put(lo, total_l1.double())
            if sketch_batch is not None:
                sketch_out.put(lo, sketch_batch)
            done.clear()
            if progress:
                progress(min(lo + batch_size, n), n)
    finally:
        for handle in handles:
            handle.remove()
        for p in trainable:
            p.requires_grad_(True)
        done.clear()
    layer_sq_all = layer_sq_out.result()
    return GradientStats(
        scope="all",
        features=feats.result(),
        logits=logits_out.result(),
        l1=l1_out.result() if want_l1 else np.full(n, np.nan),
        l2=np.sqrt(layer_sq_all.sum(1)),
        layer_l2=np.sqrt(layer_sq_all),
        layer_names=[name for name, *_ in layers],
        sketch=sketch_out.result() if sketch_out.array is not None else None,
    )


def gradient_stats(
    model: Classifier,
    pixels: Pixels,
    labels: np.ndarray,
    *,
    scope: str = "last",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> GradientStats:
    """Per-sample gradient norms of ``model`` for the given ``scope`` ('last' or 'all')."""
    if scope == "last":
        out = forward_pass(model, pixels, batch_size=batch_size, device=device, progress=progress)
        l1, l2 = last_layer_norms(out.features, out.logits, labels)
        return GradientStats(scope="last", features=out.features, logits=out.logits, l1=l1, l2=l2)
    if scope == "all":
        return all_layer_norms(
            model,
            pixels,
            labels,
            sketch_dims=SKETCH_DIMS,
            batch_size=max(1, batch_size // 2),
            device=device,
            progress=progress,
        )
    options.check_choice(scope, options.SCOPES, "scope")
    raise AssertionError(f"scope {scope} is listed in options.SCOPES but not computed here")


# -- references ------------------------------------------------------------------------------
def per_sample_gradients_vmap(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, *, only_head: bool = False
) -> dict[str, torch.Tensor]:
    """Exact per-sample gradients ``{param name: (B, *shape)}`` by ``torch.func.vmap(grad)``.

    ``x``: float ``(B, C, H, W)`` in [0, 1]. Memory is B times the parameter count: a reference
    for tests and benchmarks, not a path for whole data sets.
    """
    from torch.func import functional_call, grad, vmap

    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if only_head:
        params = {k: v for k, v in params.items() if k.startswith("head.")}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    rest = {k: v.detach() for k, v in model.named_parameters() if k not in params}

    def loss_of(p, xi, yi):
        logits = functional_call(model, {**rest, **buffers, **p}, (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    return vmap(grad(loss_of), in_dims=(None, 0, 0))(params, x, y)


def per_sample_gradients_loop(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, *, only_head: bool = False
) -> dict[str, torch.Tensor]:
    """The same as :func:`per_sample_gradients_vmap` by one ``autograd.grad`` call per sample,
    as the paper's code does; the slow baseline of the benchmarks."""
    model.eval()
    named = [
        (k, v) for k, v in model.named_parameters() if v.requires_grad and (not only_head or k.startswith("head."))
    ]
    out: dict[str, list[torch.Tensor]] = {k: [] for k, _ in named}
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, [v for _, v in named])
        for (k, _), g in zip(named, grads):
            out[k].append(g)
    return {k: torch.stack(v) for k, v in out.items()}


def norms_of(grads: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and L2 ``(B,)`` over all tensors of a per-sample gradient dict."""
    flat = torch.cat([g.flatten(1) for g in grads.values()], 1)
    return flat.abs().sum(1), flat.pow(2).sum(1).sqrt()
