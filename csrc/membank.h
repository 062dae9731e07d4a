// rs_kernels memory-bank extension: shared declarations and argument checks (docs/design.md).
//
// A class-wise bank is (C, S, D) rows with (C, S) scores and (C,) int64 fill counts: slots
// 0..count-1 of a class are filled, in descending score order; unfilled slots hold zero rows and
// zero scores. The per-video bank of the supplementary's Table 2 is (V, K, D), updated by
// momentum. The spec of every op is the matching `membank_*` function of rs_kernels/reference.py;
// the kernels equal it bit for bit.
//
// The checks below are the only ones: the metadata checks run in the CPU, CUDA and Meta kernels
// alike (the Python fake kernels of membank_gather and membank_gather_insert_ reach theirs through
// the ops membank_gather_check and membank_gather_insert_check); FakeTensorMode and torch.compile run those, so a traced call fails as an
// eager one does. They read sizes as SymInts, so they also run on symbolic shapes. Value
// checks (NaN scores, 0/1 labels, count and index ranges) read the data: the real kernels alone
// make them, and on CUDA they cost one sync.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include <tuple>

namespace rs_kernels {

// ---- metadata checks (shape, dtype, device), one per op: also the Meta kernels' --------------------
void check_gather_meta(const at::Tensor& bank, const at::Tensor& count, const at::Tensor& labels);
// (membank_insert_topk_'s check is also membank_gather_insert_'s: the two take the same arguments.)
void check_insert_meta(const at::Tensor& bank, const at::Tensor& scores, const at::Tensor& count,
                       const at::Tensor& cand, const at::Tensor& cand_scores, const at::Tensor& labels);
void check_momentum_meta(const at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m);
void check_momentum_read_meta(const at::Tensor& bank, const at::Tensor& index);

// ---- value checks (read the data) ---------------------------------------------------------------
// Returns labels as a contiguous bool tensor, after checking that a non-bool one holds only 0 and 1.
at::Tensor labels_as_bool(const at::Tensor& labels);
void check_count_values(const at::Tensor& count, int64_t slots);
void check_scores_values(const at::Tensor& scores, const at::Tensor& count, const at::Tensor& cand_scores);
// The same checks off the CPU, split so that a caller can read the flags in its own host read:
// scores_value_flags gives them as a (3,) int64 tensor on the scores' device; raise_on_scores_flags
// raises the error of the first one set, given their host copy.
at::Tensor scores_value_flags(const at::Tensor& scores, const at::Tensor& count, const at::Tensor& cand_scores);
void raise_on_scores_flags(const at::Tensor& host_flags, int64_t slots);
void check_index_values(const at::Tensor& index, int64_t n_videos);

// ---- shared preparation ----------------------------------------------------------------------------
// Copies in place back into a non-contiguous argument the result computed in its contiguous copy.
void write_back(at::Tensor& arg, const at::Tensor& work);

// The momentum update's inputs after its checks: contiguous copies of the bank (to be written back),
// index and candidates, and the (videos, elements per slot row) to update; either 0: nothing to do.
struct MomentumInputs {
  at::Tensor bank, index, cand;
  int64_t batch, row;
};
MomentumInputs momentum_inputs(const at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m);

// membank_gather_insert_'s output layout, known from count and labels (bool) before any row
// moves: video b reads min(S, count[c] + K * #(videos before b with class c)) rows of each class c
// it has. Returns row_offset (B, C), where video b's rows of class c start in y, and the per-video
// offsets (B+1,), both int64 on count's device. labels must be contiguous; on the CPU, count too.
std::tuple<at::Tensor, at::Tensor> gather_insert_layout(const at::Tensor& count, const at::Tensor& labels, int64_t slots,
                                                        int64_t k);

// ---- CPU kernels ----------------------------------------------------------------------------------
// at::parallel_for's grain (items a task) for items of `elems_per_item` elements each: about
// GRAIN_SIZE elements a task. Shared with segment_weighted_sum.cpp.
inline int64_t grain_for(int64_t elems_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, elems_per_item));
}

std::tuple<at::Tensor, at::Tensor> membank_gather_cpu(const at::Tensor& bank, const at::Tensor& count,
                                                      const at::Tensor& labels);
void membank_insert_topk_cpu(at::Tensor& bank, at::Tensor& scores, at::Tensor& count, const at::Tensor& cand,
                             const at::Tensor& cand_scores, const at::Tensor& labels);
std::tuple<at::Tensor, at::Tensor> membank_gather_insert_cpu(at::Tensor& bank, at::Tensor& scores, at::Tensor& count,
                                                             const at::Tensor& cand, const at::Tensor& cand_scores,
                                                             const at::Tensor& labels);
void membank_momentum_cpu(at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m);
at::Tensor membank_momentum_read_cpu(const at::Tensor& bank, const at::Tensor& index);

}  // namespace rs_kernels
