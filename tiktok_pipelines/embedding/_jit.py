"""numba.njit with an on-disk cache that degrades to no cache instead of failing.

numba's ``cache=True`` picks a writable cache directory at decoration time (next to the source,
then ``NUMBA_CACHE_DIR``, then the user cache dir) and raises ``RuntimeError`` when none is
writable — e.g. a read-only install in a container with no home directory. A missing cache only
costs compile time (a few seconds at first call), so we fall back rather than fail the import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def njit(fn: Callable[..., Any] | None = None, *, parallel: bool = False, **options: Any) -> Any:
    """``numba.njit(cache=True, ...)`` that falls back to an uncached kernel if caching is impossible.

    Usable bare (``@njit``) or with options (``@njit(parallel=True)``).
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, parallel=parallel, **options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            warnings.warn(
                f"numba cache unavailable for {fn.__qualname__} ({exc}); compiling without a cache",
                RuntimeWarning,
                stacklevel=2,
            )
            return numba.njit(cache=False, parallel=parallel, **options)(fn)

    return decorate(fn) if fn is not None else decorate


@intrinsic
def prefetch(typingctx, arr, index):
    """Software prefetch of ``arr[index]`` (``arr[index, 0, ...]`` for n-d arrays), for reading, kept
    in all cache levels. A hint: it never faults, so an index past the end is harmless.

    Batched hash lookups are latency bound: each id costs one or two cache misses to random
    buckets. Prefetching the buckets of id i+D while probing id i keeps ~D misses in flight per
    core instead of the few the out-of-order window finds on its own — about 2x here.
    """
    if not isinstance(arr, types.Array):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        index_value = context.cast(builder, args[1], signature.args[1], types.intp)
        indices = [index_value] + [zero] * (array_type.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, array_type, array, indices, wraparound=False)
        i8_ptr = ir.IntType(8).as_pointer()
        # The intrinsic's mangled name follows the pointer type: "p0" with opaque pointers (LLVM
        # >= 15 in llvmlite >= 0.45), "p0i8" with typed pointers.
        name = "llvm.prefetch.p0" if str(i8_ptr) == "ptr" else "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8_ptr, i32, i32, i32]), name)
        builder.call(fn, [builder.bitcast(ptr, i8_ptr), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c with one rounding (``llvm.fma``), for float32 or float64 operands of one type.

    torch's CPU ``addcmul_`` (Adagrad's accumulator update) is a fused multiply-add; matching it
    is what makes our sparse Adagrad equal to torch's to the bit.
    """
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        llty = context.get_value_type(signature.return_type)
        name = "llvm.fma.f32" if signature.return_type == types.float32 else "llvm.fma.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(llty, [llty, llty, llty]), name)
        return builder.call(fn, list(args))

    return sig, codegen


@intrinsic
def load_u64(typingctx, arr, index):
    """The 8 bytes of a uint8 array at ``arr[index:index + 8]`` as one little-endian uint64, at any
    alignment (one unaligned load, which x86 and ARM64 do at full speed). The caller keeps
    ``index + 8 <= len(arr)``: nothing is checked. Lets a byte scanner test 8 bytes per step
    (ingest/fastpath.py)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 1):
        return None
    sig = types.uint64(arr, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        index_value = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, array_type, array, [index_value], wraparound=False)
        i64 = ir.IntType(64)
        value = builder.load(builder.bitcast(ptr, i64.as_pointer()), align=1)
        return value

    return sig, codegen
