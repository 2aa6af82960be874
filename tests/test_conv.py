"""The CPU-fast convolution (labelwise.models.conv) and the reshape max-pool (labelwise.models.cnn).

(An earlier max-pool split the gradient equally between tied maxima; on the crosses images, whose
flat regions make ties common, that changed GradMask's results: the tie tests below guard against it.)

Both replace an XLA primitive for speed on XLA:CPU (benchmarks/profile_cpu.py), so each is checked
against that primitive: values, first and second derivatives, under jit, for 1-D and 2-D shapes,
strides, paddings and chunkings.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from labelwise.models import conv as conv_lib
from labelwise.models.cnn import max_pool
from labelwise.models import get_model


def _dn(x, w):
  n = x.ndim - 2
  sp = "DHW"[-n:]
  return lax.conv_dimension_numbers(x.shape, w.shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))


def _xla(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_dn(x, w))


def _mine(x, w, strides, padding):
  return conv_lib.conv_general_dilated(x, w, strides, padding, dimension_numbers=_dn(x, w),
                                       impl="matmul")


CASES = [  # (input shape, kernel shape, strides, padding)
    ((5, 9, 9, 3), (3, 3, 3, 4), (1, 1), "SAME"),
    ((4, 8, 8, 3), (3, 3, 3, 6), (2, 2), ((1, 1), (1, 1))),   # ResNet's strided 3x3
    ((4, 8, 8, 3), (1, 1, 3, 6), (2, 2), "VALID"),             # ResNet's 1x1 shortcut
    ((3, 7, 6, 2), (3, 2, 2, 5), (1, 2), ((2, 0), (1, 1))),    # uneven everything
    ((6, 17, 2), (3, 2, 4), (1,), "SAME"),                     # 1-D (small_cnn on signals)
    ((6, 17, 2), (5, 2, 4), (3,), "VALID"),
]


@pytest.mark.parametrize("target_rows", [7, 10_000])  # several (odd-sized) chunks, one chunk
@pytest.mark.parametrize("xs,ws,strides,padding", CASES)
def test_kernel_gradient_matches_xla(xs, ws, strides, padding, target_rows, monkeypatch):
  monkeypatch.setattr(conv_lib, "TARGET_ROWS", target_rows)
  kx, kw, kd = jax.random.split(jax.random.PRNGKey(0), 3)
  x, w = jax.random.normal(kx, xs), jax.random.normal(kw, ws)
  y = _xla(x, w, strides, padding)
  dy = jax.random.normal(kd, y.shape)

  def loss(f):
    return jax.jit(lambda x, w: jnp.sum(f(x, w, strides, padding) * dy))

  np.testing.assert_array_equal(jax.jit(lambda x, w: _mine(x, w, strides, padding))(x, w), y)
  gx_ref, gw_ref = jax.grad(loss(_xla), argnums=(0, 1))(x, w)
  gx, gw = jax.grad(loss(_mine), argnums=(0, 1))(x, w)
  np.testing.assert_array_equal(gx, gx_ref)  # the input gradient is XLA's own
  np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-5)
  # The same through the public helper, with explicit pads.
  pads = padding if not isinstance(padding, str) else lax.padtype_to_pads(
      xs[1:-1], ws[:-2], strides, padding)
  np.testing.assert_allclose(conv_lib.kernel_gradient(x, dy, ws, strides, tuple(pads)), gw_ref,
                             rtol=1e-5, atol=1e-5)


def test_second_order_gradients_match_xla():
  """GradMask/RRR differentiate an input gradient again: d/dw of ||d out / dx||^2."""
  kx, kw = jax.random.split(jax.random.PRNGKey(1))
  x, w = jax.random.normal(kx, (3, 6, 6, 2)), jax.random.normal(kw, (3, 3, 2, 3))

  def penalty(f):
    def pen(w):
      gx = jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, w, (1, 1), "SAME"))))(x)
      return jnp.sum(gx ** 2)
    return jax.jit(jax.grad(pen))

  np.testing.assert_allclose(penalty(_mine)(w), penalty(_xla)(w), rtol=1e-5, atol=1e-5)


def _patches(x, w, strides, padding):
  return conv_lib.conv_general_dilated(x, w, strides, padding, dimension_numbers=_dn(x, w),
                                       impl="patches")


@pytest.mark.parametrize("xs,ws,strides,padding", CASES)
def test_patches_convolution_matches_xla_to_second_order(xs, ws, strides, padding):
  """impl="patches": the whole convolution as patches @ kernel, plain autodiff; values, both first
  derivatives and d/dw of an input-gradient penalty (GradMask/RRR) against lax's."""
  kx, kw, kd = jax.random.split(jax.random.PRNGKey(5), 3)
  x, w = jax.random.normal(kx, xs), jax.random.normal(kw, ws)
  y = _xla(x, w, strides, padding)
  dy = jax.random.normal(kd, y.shape)
  got = jax.jit(lambda x, w: _patches(x, w, strides, padding))(x, w)
  assert got.shape == y.shape
  np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)

  def first(f):
    return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w, strides, padding) * dy), argnums=(0, 1)))

  for a, b in zip(first(_patches)(x, w), first(_xla)(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

  def second(f):
    def pen(w):
      gx = jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, w, strides, padding)) * dy))(x)
      return jnp.sum(gx ** 2)
    return jax.jit(jax.grad(pen))

  ref = second(_xla)(w)   # entries up to a few hundred: float32 reordering, relative to the scale
  np.testing.assert_allclose(second(_patches)(w), ref, rtol=1e-5,
                             atol=1e-5 * float(jnp.max(jnp.abs(ref))))


def test_patches_convolution_under_vmap_over_kernels():
  """A sweep's vmap: each replica its own input and kernel; the same as each replica alone (lax)."""
  kx, kw = jax.random.split(jax.random.PRNGKey(6))
  x, w = jax.random.normal(kx, (4, 3, 7, 7, 2)), jax.random.normal(kw, (4, 3, 3, 2, 5))
  got = jax.jit(jax.vmap(lambda x, w: _patches(x, w, (1, 1), "SAME")))(x, w)
  for r in range(4):
    np.testing.assert_allclose(got[r], _xla(x[r], w[r], (1, 1), "SAME"), rtol=1e-5, atol=1e-5)


def test_unsupported_convolutions_fall_back_to_xla_and_bf16_keeps_dtype():
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 2, 4))
  # Feature groups and dilation are not handled by the matmul path: lax is called as is.
  for kw in (dict(feature_group_count=2), dict(rhs_dilation=(2, 2))):
    ww = w if "feature_group_count" in kw else jnp.concatenate([w, w], axis=2)
    got = jax.grad(lambda w_: jnp.sum(conv_lib.conv_general_dilated(
        x, w_, (1, 1), "SAME", dimension_numbers=_dn(x, ww), impl="matmul", **kw) ** 2))(ww)
    ref = jax.grad(lambda w_: jnp.sum(lax.conv_general_dilated(
        x, w_, (1, 1), "SAME", dimension_numbers=_dn(x, ww), **kw) ** 2))(ww)
    np.testing.assert_array_equal(got, ref)
  xb, wb = x.astype(jnp.bfloat16), jnp.concatenate([w, w], axis=2).astype(jnp.bfloat16)
  g = jax.grad(lambda w_: jnp.sum(_mine(xb, w_, (1, 1), "SAME").astype(jnp.float32)))(wb)
  assert g.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="impl must be one of"):
    conv_lib.conv_general_dilated(x, wb, (1, 1), "SAME", dimension_numbers=_dn(x, wb),
                                  impl="fast")
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    get_model("small_cnn", num_classes=2, conv_impl="fast").init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("small_cnn", {}, (4, 28, 28)), ("small_cnn", {}, (4, 40)), ("attribution_cnn", {}, (4, 28, 28)),
    ("resnet18", dict(width=4, stage_sizes=(1, 1)), (4, 8, 8, 3))])
def test_models_same_gradients_with_xla_and_auto_convolutions(name, kwargs, shape):
  x = jax.random.normal(jax.random.PRNGKey(4), shape)
  y = jnp.arange(shape[0]) % 3
  grads = {}
  for impl in ("xla", "matmul", "patches"):
    model = get_model(name, num_classes=3, conv_impl=impl, **kwargs)
    variables = model.init(jax.random.PRNGKey(0), x)

    def loss(params):
      out = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])[0]
      return jnp.mean(-jax.nn.log_softmax(out["logits"])[jnp.arange(len(y)), y])
    grads[impl] = jax.jit(jax.grad(loss))(variables["params"])
  for impl in ("matmul", "patches"):
    for a, b in zip(jax.tree_util.tree_leaves(grads["xla"]), jax.tree_util.tree_leaves(grads[impl])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=impl)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape,window", [((3, 8, 8, 2), (2, 2)), ((3, 9, 7, 2), (2, 2)),
                                          ((3, 11, 2), (2,)), ((2, 6, 6, 1), (3, 2))])
def test_max_pool_matches_flax_values_and_gradients(shape, window, ties):
  # With ties (integer inputs: many windows have several maxima) the gradient must still go to the
  # first maximal element, as flax's does: input-gradient penalties and saliency maps depend on it.
  if ties:
    x = jnp.asarray(np.random.RandomState(0).randint(0, 3, shape).astype(np.float32))
  else:
    x = jax.random.normal(jax.random.PRNGKey(5), shape)
  ref = lambda v: nn.max_pool(v, window, strides=window)
  np.testing.assert_array_equal(jax.jit(lambda v: max_pool(v, window))(x), ref(x))
  w = jax.random.normal(jax.random.PRNGKey(6), ref(x).shape)
  np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(max_pool(v, window) * w))(x),
                                jax.grad(lambda v: jnp.sum(ref(v) * w))(x))
  # Second order (an input-gradient penalty differentiated again) through a ReLU-conv-pool model.
  k = jax.random.normal(jax.random.PRNGKey(7), (3,) * (x.ndim - 2) + (shape[-1], 2))
  dn = _dn(x, k)

  def penalty(pool):
    def pen(k):
      f = lambda v: jnp.sum(pool(jax.nn.relu(lax.conv_general_dilated(v, k, (1,) * (x.ndim - 2),
                                                                      "SAME",
                                                                      dimension_numbers=dn))))
      return jnp.sum(jax.grad(f)(x) ** 2)
    return jax.grad(pen)(k)

  np.testing.assert_allclose(penalty(lambda v: max_pool(v, window)), penalty(ref), rtol=1e-6)
  with pytest.raises(ValueError, match="one size per spatial axis"):
    max_pool(x, window + (2,))


def _shard_map_kernel_grad(conv, w, x, mesh):
  """pmean(grad(pmean(loss))) of a replicated kernel ``w`` with ``x`` split over ``mesh``."""
  from jax.sharding import PartitionSpec as P

  def per_device(w, x):
    g = jax.grad(lambda w: jax.lax.pmean(jnp.sum(conv(x, w, (1, 1), "SAME") ** 2), "data"))(w)
    return jax.lax.pmean(g, "data")
  return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")),
                               out_specs=P()))(w, x)


def test_kernel_gradient_of_a_replicated_kernel_under_shard_map():
  """A replicated kernel with per-device inputs: the gradient comes back replicated and summed,
  as with lax's convolution (pmean(grad(pmean(loss))) is the project's rule)."""
  mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])
  x = jax.random.normal(jax.random.PRNGKey(7), (4, 6, 6, 2))
  w = jax.random.normal(jax.random.PRNGKey(8), (3, 3, 2, 3))

  np.testing.assert_allclose(_shard_map_kernel_grad(_mine, w, x, mesh),
                             _shard_map_kernel_grad(_xla, w, x, mesh), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_devices", [1, 2])
def test_chunked_kernel_gradient_under_shard_map(num_devices, monkeypatch):
  """The chunks' scan carry varies over the mesh like the data: on one device too (issue 16: the
  README's single-device shard_map command failed with a carry type mismatch)."""
  monkeypatch.setattr(conv_lib, "TARGET_ROWS", 36)  # 1 example per chunk: the scan path
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:num_devices])
  x = jax.random.normal(jax.random.PRNGKey(9), (4, 6, 6, 2))
  w = jax.random.normal(jax.random.PRNGKey(10), (3, 3, 2, 3))

  assert conv_lib._chunk_size(4 // num_devices, 36) == 1
  np.testing.assert_allclose(_shard_map_kernel_grad(_mine, w, x, mesh),
                             _shard_map_kernel_grad(_xla, w, x, mesh), rtol=1e-5, atol=1e-5)
