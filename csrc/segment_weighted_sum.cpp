// rs_kernels::segment_weighted_sum: out[b] = sum over the rows t of video b of w[t] x[t], the
// prediction head's class-agnostic pooling, on the CPU (docs/design.md, "Prediction head").
//
// Its spec is rs_kernels/reference.py's segment_weighted_sum, torch.segment_reduce(w[:, None] * x,
// "sum", initial=0), and the kernel equals it bit for bit: each product is rounded to the dtype
// before it is added (-ffp-contract=off, no FMA), and each output column adds its rows in row order
// from zero, as segment_reduce does. What differs is the memory traffic: segment_reduce walks each
// column down the rows (a stride of D) of a product that was written out first; this kernel reads
// X once, a row at a time, and writes only the (B, D) result.
//
// The backward is the one autograd derives for that spec, op for op (so training's gradients keep
// their bits too): g_rows = dL/dout[video of each row], dw = (g_rows * x).sum(1), dx = g_rows * w.
#include "membank.h"  // grain_for

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace rs_kernels {

namespace {

// Shape, dtype and device checks (no data access: also the Meta kernel's).
void check_meta(const at::Tensor& w, const at::Tensor& x, const at::Tensor& cu_seqlens) {
  TORCH_CHECK(x.dim() == 2, "segment_weighted_sum: x must be (N, D); got shape ", x.sym_sizes());
  TORCH_CHECK(w.dim() == 1 && w.sym_size(0) == x.sym_size(0), "segment_weighted_sum: w must be (N,) with N = ",
              x.sym_size(0), " (x.size(0)); got shape ", w.sym_sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "segment_weighted_sum: x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "segment_weighted_sum: w must have x's dtype ", x.scalar_type(),
              "; got ", w.scalar_type());
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.sym_size(0) >= 1 &&
                  (cu_seqlens.scalar_type() == at::kInt || cu_seqlens.scalar_type() == at::kLong),
              "segment_weighted_sum: cu_seqlens must be a 1-D int32/int64 tensor of B+1 >= 1 offsets; got shape ",
              cu_seqlens.sym_sizes(), " ", cu_seqlens.scalar_type());
  TORCH_CHECK(w.device() == x.device() && cu_seqlens.device() == x.device(), "segment_weighted_sum: x is on ",
              x.device(), ", w on ", w.device(), " and cu_seqlens on ", cu_seqlens.device(), "; they must share one");
}

// The offsets as int64, after checking that they run from 0 to N without going down.
at::Tensor checked_offsets(const at::Tensor& cu_seqlens, int64_t rows) {
  at::Tensor cu = cu_seqlens.to(at::kLong).contiguous();
  const int64_t* offsets = cu.const_data_ptr<int64_t>();
  const int64_t batch = cu.numel() - 1;
  TORCH_CHECK(offsets[0] == 0 && offsets[batch] == rows, "segment_weighted_sum: cu_seqlens must run from 0 to N = ",
              rows, "; got ", offsets[0], " to ", offsets[batch]);
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(offsets[b] <= offsets[b + 1], "segment_weighted_sum: cu_seqlens must not decrease; offset ", b + 1,
                " is ", offsets[b + 1], " after ", offsets[b]);
  }
  return cu;
}

at::Tensor segment_weighted_sum_cpu(const at::Tensor& w_in, const at::Tensor& x_in, const at::Tensor& cu_seqlens) {
  check_meta(w_in, x_in, cu_seqlens);
  const at::Tensor w = w_in.contiguous(), x = x_in.contiguous();
  const at::Tensor cu = checked_offsets(cu_seqlens, x.size(0));
  const int64_t batch = cu.numel() - 1, dim = x.size(1);
  at::Tensor out = at::zeros({batch, dim}, x.options());
  if (dim == 0 || batch == 0) {
    return out;
  }
  const int64_t* offsets = cu.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "segment_weighted_sum", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    // A video a task: each writes only its own output row, so any thread count gives the same bits.
    at::parallel_for(0, batch, grain_for(x.numel() / batch), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        scalar_t* acc = op + b * dim;
        for (int64_t t = offsets[b]; t < offsets[b + 1]; ++t) {
          const scalar_t weight = wp[t];
          const scalar_t* row = xp + t * dim;
          for (int64_t d = 0; d < dim; ++d) {
            const scalar_t product = weight * row[d];
            acc[d] += product;
          }
        }
      }
    });
  });
  return out;
}

at::Tensor segment_weighted_sum_meta(const at::Tensor& w, const at::Tensor& x, const at::Tensor& cu_seqlens) {
  check_meta(w, x, cu_seqlens);
  return at::empty_symint({cu_seqlens.sym_size(0) - 1, x.sym_size(1)}, x.options());
}

at::Tensor segment_weighted_sum(const at::Tensor& w, const at::Tensor& x, const at::Tensor& cu_seqlens) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("rs_kernels::segment_weighted_sum", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(w, x, cu_seqlens);
}

class SegmentWeightedSum : public torch::autograd::Function<SegmentWeightedSum> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& w, const at::Tensor& x,
                            const at::Tensor& cu_seqlens) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({w, x, cu_seqlens});
    return segment_weighted_sum(w, x, cu_seqlens);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &w = saved[0], &x = saved[1], &cu_seqlens = saved[2];
    const at::Tensor g_rows = at::repeat_interleave_symint(grads[0], cu_seqlens.diff(), /*dim=*/0, x.sym_size(0));
    at::Tensor dw = ctx->needs_input_grad(0) ? (g_rows * x).sum(1) : at::Tensor();
    at::Tensor dx = ctx->needs_input_grad(1) ? g_rows * w.unsqueeze(1) : at::Tensor();
    return {dw, dx, at::Tensor()};
  }
};

at::Tensor segment_weighted_sum_autograd(const at::Tensor& w, const at::Tensor& x, const at::Tensor& cu_seqlens) {
  return SegmentWeightedSum::apply(w, x, cu_seqlens);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rs_kernels, m) {
  m.def("segment_weighted_sum(Tensor w, Tensor x, Tensor cu_seqlens) -> Tensor");
}

TORCH_LIBRARY_IMPL(rs_kernels, CPU, m) {
  m.impl("segment_weighted_sum", &segment_weighted_sum_cpu);
}

TORCH_LIBRARY_IMPL(rs_kernels, Meta, m) {
  m.impl("segment_weighted_sum", &segment_weighted_sum_meta);
}

TORCH_LIBRARY_IMPL(rs_kernels, Autograd, m) {
  m.impl("segment_weighted_sum", &segment_weighted_sum_autograd);
}

}  // namespace rs_kernels
