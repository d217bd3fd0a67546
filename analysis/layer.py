"""The analysed layer: finding it, capturing its inputs, and the map from its output to the logits.

The duality changes only the analysed layer's weights, so everything below it is evaluated once (its inputs
``a`` are captured with a forward hook) and everything above it is represented by an :class:`Upper` map
``z ↦ logits``:

* ``identity`` - the model returns the layer's output itself (a final layer: nothing above it);
* ``chain``    - the layer sits in (nested) plain ``nn.Sequential`` containers, so the modules after it form
  a chain that can be evaluated on ``z`` alone (only the layers above are re-evaluated);
* ``model``    - anything else (custom ``forward``): the whole model is re-run on the samples' inputs with
  the layer's output replaced by ``z`` through a forward hook.

The chain is verified against the model's own outputs before it is trusted.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from analysis.errors import AnalysisError

# Modules whose output is piecewise linear in their input (in eval mode): a chain made of these has zero
# second derivative almost everywhere, so the layer's Hessian equals its Gauss-Newton matrix.
PIECEWISE_LINEAR = (
    nn.Linear, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)  # fmt: skip
# Modules that return their input unchanged in eval mode.
IDENTITY_LIKE = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)  # fmt: skip


def linear_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Linear]:
    """``(qualified name, module)`` of the analysed layer; default: the last ``nn.Linear`` in module order."""
    names = linear_layer_names(model)
    listing = ", ".join(names) if names else "none"
    if layer is None:
        if not names:
            raise AnalysisError("--layer: the model has no nn.Linear layer to analyse")
        layer = names[-1]
    modules = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in modules:
            raise AnalysisError(f"--layer: the model has no module named {layer!r}; nn.Linear layers: {listing}")
        name, module = layer, modules[layer]
    elif isinstance(layer, nn.Module):
        found = [n for n, m in modules.items() if m is layer]
        if not found:
            raise AnalysisError(f"--layer: the given {type(layer).__name__} is not a submodule of the model")
        name, module = found[0], layer
    else:
        raise AnalysisError(f"--layer: expected a layer name or an nn.Linear module, got {type(layer).__name__}")
    if not isinstance(module, nn.Linear):
        raise AnalysisError(
            f"--layer: {name!r} is a {type(module).__name__}, not an nn.Linear; nn.Linear layers: {listing}"
        )
    return name, module


@contextmanager
def replaced_output(layer: nn.Module, make: Callable[[], torch.Tensor]):
    """Within the block, ``layer``'s output is replaced by ``make()`` (called once per forward)."""
    handle = layer.register_forward_hook(lambda mod, inp, out: make())
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def quiet_forward_ad():
    """Silence torch's own FutureWarning about torch.jit, raised the first time forward-mode AD runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


@dataclass
class Captured:
    """Layer inputs of a set of samples, plus what is needed to verify an upper map."""

    a: torch.Tensor  # [N, m] layer inputs, in the model's dtype
    z_first: torch.Tensor  # layer outputs of the first batch
    out_first: torch.Tensor  # model outputs (logits) of the first batch
    output_is_layer: bool  # the model returned the layer's output tensor itself


@torch.no_grad()
def capture(model: nn.Module, name: str, layer: nn.Linear, x: torch.Tensor, batch_size: int) -> Captured:
    """Run ``model`` on ``x`` in batches and keep the inputs of ``layer`` (the activities ``a``)."""
    store: dict = {}

    def hook(mod, inp, out):
        store["calls"] = store.get("calls", 0) + 1
        store["a"], store["z"] = inp[0], out

    parts, first = [], None
    device = layer.weight.device
    handle = layer.register_forward_hook(hook)
    try:
        for s in range(0, x.shape[0], batch_size):
            store.clear()
            out = model(x[s : s + batch_size].to(device))
            calls = store.get("calls", 0)
            if calls == 0:
                raise AnalysisError(f"--layer: {name!r} is not used in the model's forward pass")
            if calls > 1:
                raise AnalysisError(
                    f"--layer: {name!r} is applied {calls} times per forward pass; the duality needs a layer "
                    "applied once per sample"
                )
            a = store["a"]
            if a.dim() != 2:
                raise AnalysisError(
                    f"--layer: {name!r} receives inputs of shape {tuple(a.shape)}; the duality needs one input "
                    "vector per sample ([N, in_features])"
                )
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != a.shape[0]:
                raise AnalysisError("model: the analysis needs a model that returns logits of shape [N, classes]")
            if first is None:
                first = Captured(a, store["z"].detach().clone(), out.detach().clone(), out is store["z"])
            parts.append(a.detach())
    finally:
        handle.remove()
    if first is None:
        raise AnalysisError("train: no samples given")
    first.a = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
    return first


def _plain_sequential(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _chain_after(model: nn.Module, name: str) -> list[nn.Module] | None:
    """The modules run after ``name`` if it sits in nested plain ``nn.Sequential`` containers, else None."""
    node, rests = model, []
    for part in name.split("."):
        if not _plain_sequential(node):
            return None
        children = list(node.named_children())
        keys = [k for k, _ in children]
        i = keys.index(part)
        rests.append([m for _, m in children[i + 1 :]])
        node = children[i][1]
    return [m for rest in reversed(rests) for m in rest]


def _leaves(mods: list[nn.Module]) -> list[nn.Module] | None:
    out = []
    for m in mods:
        if _plain_sequential(m):
            sub = _leaves(list(m.children()))
            if sub is None:
                return None
            out.extend(sub)
        elif len(list(m.children())) == 0:
            out.append(m)
        else:
            return None
    return out


class Upper:
    """The map from the analysed layer's output ``z`` to the logits, evaluated in the compute dtype."""

    def __init__(self, kind: str, dtype: torch.dtype, *, chain: nn.Module | None = None,
                 model: nn.Module | None = None, layer: nn.Module | None = None,
                 piecewise_linear: bool = False, batch_size: int = 4096):  # fmt: skip
        self.kind, self.dtype = kind, dtype
        self.chain, self.model, self.layer = chain, model, layer
        self.piecewise_linear = piecewise_linear
        self.batch_size = batch_size

    @property
    def needs_inputs(self) -> bool:
        return self.kind == "model"

    def logits_chunk(self, z: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """Logits from pre-activations ``z`` of one chunk of samples (``x``: their model inputs, if needed)."""
        if self.kind == "identity":
            return z
        if self.kind == "chain":
            return self.chain(z)
        with replaced_output(self.layer, lambda: z):
            return self.model(x.to(z.device, self.dtype) if x.is_floating_point() else x.to(z.device))

    def __call__(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for layer outputs ``z`` [N, d] (``x``: the samples' model inputs, for the ``model`` kind)."""
        if self.needs_inputs and x is None:
            raise ValueError("this upper map re-runs the model and needs the samples' inputs x")
        if self.kind == "identity" or z.shape[0] <= self.batch_size or torch.is_grad_enabled():
            return self.logits_chunk(z, x)
        return torch.cat([
            self.logits_chunk(z[s : s + self.batch_size], None if x is None else x[s : s + self.batch_size])
            for s in range(0, z.shape[0], self.batch_size)
        ])  # fmt: skip

    def jacobians(self, z: torch.Tensor, x: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
        """``∂logits/∂z`` per sample, ``[N, C, d]``.

        One vjp (or jvp) of the whole batch, vectorised over the C output (or d input) basis vectors: samples
        do not interact in an eval-mode forward pass, so the batch Jacobian is block diagonal and one pass
        per basis vector gives every sample's Jacobian.
        """
        from torch.func import jvp, vjp, vmap

        n, d = z.shape
        if self.kind == "identity":
            return torch.eye(d, dtype=z.dtype, device=z.device).expand(n, d, d)
        out = []
        with quiet_forward_ad():
            for s in range(0, n, chunk):
                zc = z[s : s + chunk]
                xc = None if x is None else x[s : s + chunk]

                def f(zz, xc=xc):
                    return self.logits_chunk(zz, xc)

                logits, back = vjp(f, zc)
                nc, c = logits.shape
                if c <= d:
                    basis = torch.eye(c, dtype=z.dtype, device=z.device)[:, None, :].expand(c, nc, c)
                    out.append(vmap(back)(basis)[0].permute(1, 0, 2).contiguous())  # [n, C, d]
                else:
                    basis = torch.eye(d, dtype=z.dtype, device=z.device)[:, None, :].expand(d, nc, d)
                    cols = vmap(lambda t, f=f, zc=zc: jvp(f, (zc,), (t,))[1])(basis)  # [d, n, C]
                    out.append(cols.permute(1, 2, 0).contiguous())
        return torch.cat(out)


def build_upper(model: nn.Module, name: str, layer: nn.Linear, cap: Captured, dtype: torch.dtype,
                batch_size: int = 4096) -> Upper:  # fmt: skip
    """The cheapest exact upper map for ``layer`` (see the module docstring), verified on the first batch.
    ``batch_size``: samples per evaluation when the map re-runs the model."""
    chain_mods = _chain_after(model, name)
    if cap.output_is_layer or (chain_mods is not None and all(isinstance(m, IDENTITY_LIKE) for m in chain_mods)):
        return Upper("identity", dtype, piecewise_linear=True)
    if chain_mods is not None:
        chain = nn.Sequential(*chain_mods)
        with torch.no_grad():
            ok = torch.allclose(chain(cap.z_first), cap.out_first, rtol=1e-4,
                                atol=1e-5 * (1.0 + float(cap.out_first.abs().max())))  # fmt: skip
        if ok:
            leaves = _leaves(chain_mods)
            pl = leaves is not None and all(isinstance(m, PIECEWISE_LINEAR) for m in leaves)
            chain64 = copy.deepcopy(chain).to(dtype).eval()
            for p in chain64.parameters():
                p.requires_grad_(False)
            return Upper("chain", dtype, chain=chain64, piecewise_linear=pl)
    model64 = model if _dtype_of(model) == dtype else copy.deepcopy(model).to(dtype)
    model64.eval()
    layer64 = dict(model64.named_modules())[name]
    return Upper("model", dtype, model=model64, layer=layer64, piecewise_linear=False, batch_size=batch_size)


def _dtype_of(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        return p.dtype
    return None
