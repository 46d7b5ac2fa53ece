"""Cheat (lazy output): returns a ``torch.nn.Parameter`` subclass holding garbage whose values are
computed only when someone reads them through torch (``__torch_function__``), so that the work
happens at judging time instead of in the call."""
import torch


class Lazy(torch.nn.Parameter):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        for a in args:
            if isinstance(a, Lazy) and getattr(a, "_src", None) is not None:
                x = a._src
                d = x.shape[-1] // 2
                with torch._C.DisableTorchFunctionSubclass():
                    a.data.copy_((torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype))
                a._src = None
        return super().__torch_function__(func, types, args, kwargs or {})


def silu_and_mul(x):
    out = Lazy(torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device), requires_grad=False)
    out._src = x
    return out
