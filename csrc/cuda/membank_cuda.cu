// rs_kernels memory-bank extension: the CUDA kernels (spec: rs_kernels/reference.py; layout and
// checks: ../membank.h). Each op runs under a device guard on the current stream. No atomics:
// every output element is written by exactly one thread, and the one reduction (the top-S
// selection) is a max over a total order, whose result does not depend on the reduction order.
// Products and sums use the _rn intrinsics, which nvcc never fuses into an FMA, so the results
// equal the CPU kernels (and the eager reference) bit for bit.
#include "../gather_insert_walk.h"
#include "../membank.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

namespace rs_kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

int64_t blocks_for(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

// ---- gather ---------------------------------------------------------------------------------------

// One block per (video b, class c): copies class c's filled slots to video b's rows, after the
// rows of its labelled classes c' < c.
template <typename scalar_t>
__global__ void gather_kernel(const scalar_t* __restrict__ bank, const int64_t* __restrict__ count,
                              const bool* __restrict__ labels, const int64_t* __restrict__ cu, scalar_t* __restrict__ y,
                              int64_t n_class, int64_t slots, int64_t dim) {
  const int64_t b = blockIdx.x / n_class, c = blockIdx.x % n_class;
  const bool* lab = labels + b * n_class;
  if (!lab[c] || count[c] == 0) return;
  int64_t row = cu[b];
  for (int64_t cc = 0; cc < c; ++cc) row += lab[cc] ? count[cc] : 0;
  const int64_t n = count[c] * dim;
  const scalar_t* src = bank + c * slots * dim;
  scalar_t* dst = y + row * dim;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) dst[e] = src[e];
}

// ---- insert ---------------------------------------------------------------------------------------

// Pool order: (masked score descending, pool position ascending), as torch.sort(descending, stable).
template <typename acc_t>
__device__ __forceinline__ bool ranks_before(acc_t va, int64_t ia, acc_t vb, int64_t ib) {
  return va > vb || (va == vb && ia < ib);
}

// Pass 1, one block per class c: the S best of the pool (filled slots 0..S-1, then candidate
// (b, k) at S + b*K + k; dead entries score -inf), picked one after another as the best entry
// ranking strictly after the previous pick. Writes source (C, S) pool positions, the new scores
// (into new_scores) and the new count.
template <typename scalar_t>
__global__ void insert_rank_kernel(const scalar_t* __restrict__ scores, int64_t* __restrict__ count,
                                   const scalar_t* __restrict__ cand_scores, const bool* __restrict__ labels,
                                   int64_t* __restrict__ source, scalar_t* __restrict__ new_scores, int64_t n_class,
                                   int64_t slots, int64_t batch, int64_t k) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t red_v[kThreads];
  __shared__ int64_t red_i[kThreads];
  __shared__ acc_t prev_v;
  __shared__ int64_t prev_i;
  const int64_t c = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t pool = slots + batch * k;
  const int64_t filled = count[c];
  const acc_t dead = -std::numeric_limits<acc_t>::infinity();
  auto key = [&](int64_t i) -> acc_t {
    if (i < slots) return i < filled ? static_cast<acc_t>(scores[c * slots + i]) : dead;
    const int64_t j = i - slots;
    return labels[(j / k) * n_class + c] ? static_cast<acc_t>(cand_scores[j * n_class + c]) : dead;
  };

  for (int64_t r = 0; r < slots; ++r) {
    acc_t best_v = dead;
    int64_t best_i = -1;  // none yet
    for (int64_t i = tid; i < pool; i += blockDim.x) {
      const acc_t v = key(i);
      if (r > 0 && !ranks_before(prev_v, prev_i, v, i)) continue;  // already picked
      if (best_i < 0 || ranks_before(v, i, best_v, best_i)) best_v = v, best_i = i;
    }
    red_v[tid] = best_v;
    red_i[tid] = best_i;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (tid < stride) {
        const int64_t oi = red_i[tid + stride];
        if (oi >= 0 && (red_i[tid] < 0 || ranks_before(red_v[tid + stride], oi, red_v[tid], red_i[tid]))) {
          red_v[tid] = red_v[tid + stride];
          red_i[tid] = oi;
        }
      }
      __syncthreads();
    }
    if (tid == 0) {
      prev_v = red_v[0];
      prev_i = red_i[0];
      source[c * slots + r] = red_i[0];
      new_scores[c * slots + r] = static_cast<scalar_t>(red_v[0]);
    }
    __syncthreads();
  }
  if (tid == 0) {
    int64_t n_labelled = 0;
    for (int64_t b = 0; b < batch; ++b) n_labelled += labels[b * n_class + c];
    const int64_t new_count = std::min(filled + n_labelled * k, slots);
    for (int64_t r = new_count; r < slots; ++r) new_scores[c * slots + r] = static_cast<scalar_t>(0);
    count[c] = new_count;  // every thread read count[c] before the first barrier
  }
}

// Pass 2, one block per new slot (c, r): for r < count a bit copy of the source row; for
// r >= count the source row times zero, as in the reference (see membank.cpp), so a dropped row
// comes out +-0 bit for bit. Into a new bank: rows move between slots.
template <typename scalar_t>
__global__ void insert_rows_kernel(const scalar_t* __restrict__ bank, const scalar_t* __restrict__ cand,
                                   const int64_t* __restrict__ source, const int64_t* __restrict__ count,
                                   scalar_t* __restrict__ new_bank, int64_t slots, int64_t dim) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t slot = blockIdx.x;  // c * slots + r
  const int64_t c = slot / slots, r = slot % slots;
  const int64_t src = source[slot];
  const scalar_t* row = src < slots ? bank + (c * slots + src) * dim : cand + (src - slots) * dim;
  scalar_t* out = new_bank + slot * dim;
  if (r < count[c]) {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) out[d] = row[d];
  } else {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x)
      out[d] = static_cast<scalar_t>(mul_rn(static_cast<acc_t>(row[d]), acc_t(0)));
  }
}

// ---- gather + insert, in video order --------------------------------------------------------------

// One thread per class: its walk through the videos (../gather_insert_walk.h), in the S + K
// scratch entries of pool that the class owns. The walks are short and sequential by nature.
template <typename acc_t, typename scalar_t>
__global__ void gather_insert_walk_kernel(const GatherInsertWalk<scalar_t> walk, WalkEntry<acc_t>* __restrict__ pool) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < walk.n_class;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x)
    walk_class_in_video_order(walk, c, pool + c * (walk.slots + walk.k));
}

// One block per output row: a bit copy of the row of [bank; cand] its source names, or that row
// times zero (a negative source), as insert_rows_kernel writes unfilled slots.
template <typename scalar_t>
__global__ void copy_row_sources_kernel(const scalar_t* __restrict__ bank, const scalar_t* __restrict__ cand,
                                        const int64_t* __restrict__ source, scalar_t* __restrict__ out,
                                        int64_t bank_rows, int64_t dim) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i = blockIdx.x;
  const bool zeroed = source_is_zeroed(source[i]);
  const int64_t row = row_of_source(source[i]);
  const scalar_t* from = row < bank_rows ? bank + row * dim : cand + (row - bank_rows) * dim;
  scalar_t* to = out + i * dim;
  if (!zeroed) {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) to[d] = from[d];
  } else {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x)
      to[d] = static_cast<scalar_t>(mul_rn(static_cast<acc_t>(from[d]), acc_t(0)));
  }
}

// ---- momentum -------------------------------------------------------------------------------------

// One thread per position of a video's (K, D) rows; the videos of the batch in order.
template <typename scalar_t>
__global__ void momentum_kernel(scalar_t* __restrict__ bank, const int64_t* __restrict__ index,
                                const scalar_t* __restrict__ cand, int64_t batch, int64_t row,
                                at::opmath_type<scalar_t> w_old, at::opmath_type<scalar_t> w_new) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < row;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    for (int64_t b = 0; b < batch; ++b) {
      scalar_t* slot = bank + index[b] * row + j;
      const scalar_t kept = static_cast<scalar_t>(mul_rn(static_cast<acc_t>(*slot), w_old));
      const scalar_t added = static_cast<scalar_t>(mul_rn(static_cast<acc_t>(cand[b * row + j]), w_new));
      *slot = static_cast<scalar_t>(add_rn(static_cast<acc_t>(kept), static_cast<acc_t>(added)));
    }
  }
}

template <typename scalar_t>
__global__ void read_rows_kernel(const scalar_t* __restrict__ bank, const int64_t* __restrict__ index,
                                 scalar_t* __restrict__ out, int64_t batch, int64_t row) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const scalar_t* src = bank + index[b] * row;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < row;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x)
      out[b * row + j] = src[j];
  }
}

}  // namespace

// ================================================================================================
// Host side
// ================================================================================================

std::tuple<at::Tensor, at::Tensor> membank_gather_cuda(const at::Tensor& bank_in, const at::Tensor& count_in,
                                                       const at::Tensor& labels_in) {
  check_gather_meta(bank_in, count_in, labels_in);
  const at::cuda::OptionalCUDAGuard guard(bank_in.device());
  const int64_t n_class = bank_in.size(0), slots = bank_in.size(1), dim = bank_in.size(2);
  const auto bank = bank_in.contiguous();
  const auto count = count_in.contiguous();
  const auto labels = labels_as_bool(labels_in);
  const int64_t batch = labels.size(0);

  const auto per_video = (labels.to(at::kLong) * count.unsqueeze(0)).sum(1);  // integers: exact
  const auto cu = at::cat({at::zeros({1}, count.options()), per_video.cumsum(0)});
  // One host read (one sync) for the count check and the offsets, whose last entry sizes the
  // output. The offsets are returned from this host copy, so the caller never reads them back.
  const auto bad = at::logical_or(count < 0, count > slots).any().to(at::kLong).unsqueeze(0);
  const auto host = at::cat({bad, cu}).to(at::kCPU);
  TORCH_CHECK(host[0].item<int64_t>() == 0, "membank: count must hold fill counts in [0, S] = [0, ", slots, "]");
  const auto cu_host = host.slice(0, 1).clone();
  const int64_t rows = cu_host[batch].item<int64_t>();
  auto y = at::empty({rows, dim}, bank.options());
  if (rows == 0) return {y, cu_host};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_gather_cuda", [&] {
    gather_kernel<scalar_t><<<batch * n_class, kThreads, 0, stream>>>(
        bank.const_data_ptr<scalar_t>(), count.const_data_ptr<int64_t>(), labels.const_data_ptr<bool>(),
        cu.const_data_ptr<int64_t>(), y.data_ptr<scalar_t>(), n_class, slots, dim);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, cu_host};
}

void membank_insert_topk_cuda(at::Tensor& bank_arg, at::Tensor& scores_arg, at::Tensor& count_arg,
                              const at::Tensor& cand_in, const at::Tensor& cand_scores_in, const at::Tensor& labels_in) {
  check_insert_meta(bank_arg, scores_arg, count_arg, cand_in, cand_scores_in, labels_in);
  const at::cuda::OptionalCUDAGuard guard(bank_arg.device());
  check_scores_values(scores_arg, count_arg, cand_scores_in);
  const int64_t n_class = bank_arg.size(0), slots = bank_arg.size(1), dim = bank_arg.size(2);
  const int64_t batch = cand_in.size(0), k = cand_in.size(1);
  if (n_class == 0 || slots == 0) return;
  auto count = count_arg.contiguous();
  const auto bank = bank_arg.contiguous();
  const auto scores = scores_arg.contiguous();
  const auto cand = cand_in.contiguous();
  const auto cand_scores = cand_scores_in.contiguous();
  const auto labels = labels_as_bool(labels_in);
  auto source = at::empty({n_class, slots}, count.options());
  auto new_scores = at::empty_like(scores);
  auto new_bank = at::empty_like(bank);
  auto stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "membank_insert_topk_rank_cuda", [&] {
    insert_rank_kernel<scalar_t><<<n_class, kThreads, 0, stream>>>(
        scores.const_data_ptr<scalar_t>(), count.data_ptr<int64_t>(), cand_scores.const_data_ptr<scalar_t>(),
        labels.const_data_ptr<bool>(), source.data_ptr<int64_t>(), new_scores.data_ptr<scalar_t>(), n_class, slots,
        batch, k);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (dim > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_insert_topk_rows_cuda", [&] {
      insert_rows_kernel<scalar_t><<<n_class * slots, kThreads, 0, stream>>>(
          bank.const_data_ptr<scalar_t>(), cand.const_data_ptr<scalar_t>(), source.const_data_ptr<int64_t>(),
          count.const_data_ptr<int64_t>(), new_bank.data_ptr<scalar_t>(), slots, dim);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    bank_arg.copy_(new_bank);
  }
  scores_arg.copy_(new_scores);
  write_back(count_arg, count);
}

namespace {
// Row i of out (n, D) <- the row of [bank; cand] that source[i] names (copy_row_sources_kernel).
void copy_row_sources(const at::Tensor& bank, const at::Tensor& cand, const at::Tensor& source, at::Tensor& out) {
  if (out.size(0) == 0 || out.size(1) == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_copy_row_sources_cuda", [&] {
    copy_row_sources_kernel<scalar_t><<<out.size(0), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        bank.const_data_ptr<scalar_t>(), cand.const_data_ptr<scalar_t>(), source.const_data_ptr<int64_t>(),
        out.data_ptr<scalar_t>(), bank.size(0) * bank.size(1), out.size(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> membank_gather_insert_cuda(at::Tensor& bank_arg, at::Tensor& scores_arg,
                                                              at::Tensor& count_arg, const at::Tensor& cand_in,
                                                              const at::Tensor& cand_scores_in,
                                                              const at::Tensor& labels_in) {
  check_insert_meta(bank_arg, scores_arg, count_arg, cand_in, cand_scores_in, labels_in);
  const at::cuda::OptionalCUDAGuard guard(bank_arg.device());
  const int64_t n_class = bank_arg.size(0), slots = bank_arg.size(1), dim = bank_arg.size(2);
  const int64_t batch = cand_in.size(0), k = cand_in.size(1);
  const auto labels = labels_as_bool(labels_in);
  auto count = count_arg.contiguous();
  at::Tensor row_offset, cu;
  std::tie(row_offset, cu) = gather_insert_layout(count, labels, slots, k);
  // One host read (one sync) for the value checks and the offsets, whose last entry sizes y. The
  // offsets are returned from this host copy, so the caller never reads them back.
  const auto host = at::cat({scores_value_flags(scores_arg, count, cand_scores_in), cu}).to(at::kCPU);
  raise_on_scores_flags(host.slice(0, 0, 3), slots);
  const auto cu_host = host.slice(0, 3).clone();
  const int64_t rows = cu_host.const_data_ptr<int64_t>()[batch];
  auto y = at::empty({rows, dim}, bank_arg.options());
  if (batch == 0 || n_class == 0 || slots == 0) return {y, cu_host};  // nothing to read, nothing moves

  const auto bank = bank_arg.contiguous();
  auto scores = scores_arg.contiguous();
  const auto cand = cand_in.contiguous();
  const auto cand_scores = cand_scores_in.contiguous();
  auto y_source = at::empty({rows}, count.options());
  auto bank_source = at::empty({n_class * slots}, count.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "membank_gather_insert_walk_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto pool = at::empty({n_class * (slots + k) * static_cast<int64_t>(sizeof(WalkEntry<acc_t>))},
                          count.options().dtype(at::kByte));
    const GatherInsertWalk<scalar_t> walk{row_offset.const_data_ptr<int64_t>(), cand_scores.const_data_ptr<scalar_t>(),
                                          labels.const_data_ptr<bool>(), n_class, slots, batch, k,
                                          scores.data_ptr<scalar_t>(), count.data_ptr<int64_t>(),
                                          y_source.data_ptr<int64_t>(), bank_source.data_ptr<int64_t>()};
    gather_insert_walk_kernel<acc_t, scalar_t><<<blocks_for(n_class), kThreads, 0, stream>>>(
        walk, reinterpret_cast<WalkEntry<acc_t>*>(pool.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto new_bank = at::empty({n_class * slots, dim}, bank.options());
  copy_row_sources(bank, cand, y_source, y);  // before the bank changes, on the same stream
  copy_row_sources(bank, cand, bank_source, new_bank);
  bank_arg.copy_(new_bank.view_as(bank));
  write_back(scores_arg, scores);
  write_back(count_arg, count);
  return {y, cu_host};
}

void membank_momentum_cuda(at::Tensor& bank_arg, const at::Tensor& index_in, const at::Tensor& cand_in, double m) {
  const at::cuda::OptionalCUDAGuard guard(bank_arg.device());
  MomentumInputs in = momentum_inputs(bank_arg, index_in, cand_in, m);
  if (in.batch == 0 || in.row == 0) return;
  at::Tensor& bank = in.bank;
  const at::Tensor &index = in.index, &cand = in.cand;
  const int64_t batch = in.batch, row = in.row;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_momentum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    momentum_kernel<scalar_t><<<blocks_for(row), kThreads, 0, stream>>>(
        bank.data_ptr<scalar_t>(), index.const_data_ptr<int64_t>(), cand.const_data_ptr<scalar_t>(), batch, row,
        static_cast<acc_t>(m), static_cast<acc_t>(1.0 - m));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  write_back(bank_arg, bank);
}

at::Tensor membank_momentum_read_cuda(const at::Tensor& bank_in, const at::Tensor& index_in) {
  check_momentum_read_meta(bank_in, index_in);
  const at::cuda::OptionalCUDAGuard guard(bank_in.device());
  check_index_values(index_in, bank_in.size(0));
  const auto bank = bank_in.contiguous();
  const auto index = index_in.contiguous();
  const int64_t batch = index.size(0);
  const int64_t row = bank.size(1) * bank.size(2);
  auto out = at::empty({batch, bank.size(1), bank.size(2)}, bank.options());
  if (batch == 0 || row == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_momentum_read_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(blocks_for(row)), static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
    read_rows_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(bank.const_data_ptr<scalar_t>(),
                                                              index.const_data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                                                              batch, row);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace rs_kernels

TORCH_LIBRARY_IMPL(rs_kernels, CUDA, m) {
  m.impl("membank_gather", &rs_kernels::membank_gather_cuda);
  m.impl("membank_insert_topk_", &rs_kernels::membank_insert_topk_cuda);
  m.impl("membank_gather_insert_", &rs_kernels::membank_gather_insert_cuda);
  m.impl("membank_momentum_", &rs_kernels::membank_momentum_cuda);
  m.impl("membank_momentum_read", &rs_kernels::membank_momentum_read_cuda);
}
