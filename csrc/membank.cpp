// rs_kernels memory-bank extension: op schemas, argument checks, the CPU and the Meta kernels.
//
// The CPU kernels are meant to read as a second reference: one loop over classes (or videos, or
// bank positions) under at::parallel_for, each iteration touching only its own output, so they
// are deterministic whatever the thread count. The spec is rs_kernels/reference.py; see
// membank.h for the bank layout.
#include "membank.h"

#include "gather_insert_walk.h"

#include <ATen/Dispatch.h>
#include <ATen/NumericUtils.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <vector>

namespace rs_kernels {

// ================================================================================================
// Checks
// ================================================================================================

namespace {
// Sizes are read as SymInts (sym_size, sym_sizes) so that the same checks run on the symbolic
// shapes of a torch.compile trace; a comparison of SymInts guards on its result there.
void check_same_device(const char* name, const at::Tensor& t, const at::Tensor& bank) {
  TORCH_CHECK(t.device() == bank.device(), "membank: ", name, " is on ", t.device(), " but bank is on ",
              bank.device());
}

void check_bank(const at::Tensor& bank, const at::Tensor& count) {
  TORCH_CHECK(bank.dim() == 3, "membank: bank must be (C, S, D); got shape ", bank.sym_sizes());
  TORCH_CHECK(at::isFloatingType(bank.scalar_type()), "membank: bank must be floating point; got ",
              bank.scalar_type());
  TORCH_CHECK(count.dim() == 1 && count.sym_size(0) == bank.sym_size(0), "membank: count must be (C,) with C = ",
              bank.sym_size(0), " (bank.size(0)); got shape ", count.sym_sizes());
  TORCH_CHECK(count.scalar_type() == at::kLong, "membank: count must be int64; got ", count.scalar_type());
  check_same_device("count", count, bank);
}

// batch: the B that labels must have (cand.size(0)), if another argument sets it.
void check_labels(const at::Tensor& labels, const at::Tensor& bank, const std::optional<c10::SymInt>& batch) {
  const c10::SymInt n_class = bank.sym_size(0);
  TORCH_CHECK(labels.dim() == 2 && labels.sym_size(1) == n_class, "membank: labels must be (B, C) with C = ",
              n_class, " (bank.size(0)); got shape ", labels.sym_sizes());
  TORCH_CHECK(!batch || labels.sym_size(0) == *batch, "membank: labels must be (B, C) with B = ", batch.value_or(-1),
              " (cand.size(0)); got shape ", labels.sym_sizes());
  TORCH_CHECK(!at::isComplexType(labels.scalar_type()), "membank: labels must be bool (or hold only 0 and 1); got ",
              labels.scalar_type());
  check_same_device("labels", labels, bank);
}
}  // namespace

void check_gather_meta(const at::Tensor& bank, const at::Tensor& count, const at::Tensor& labels) {
  check_bank(bank, count);
  check_labels(labels, bank, std::nullopt);
}

void check_insert_meta(const at::Tensor& bank, const at::Tensor& scores, const at::Tensor& count,
                       const at::Tensor& cand, const at::Tensor& cand_scores, const at::Tensor& labels) {
  check_bank(bank, count);
  const c10::SymInt n_class = bank.sym_size(0), slots = bank.sym_size(1), dim = bank.sym_size(2);
  TORCH_CHECK(scores.dim() == 2 && scores.sym_size(0) == n_class && scores.sym_size(1) == slots,
              "membank: scores must be (C, S) = (", n_class, ", ", slots, ") like bank; got shape ",
              scores.sym_sizes());
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()), "membank: scores must be floating point; got ",
              scores.scalar_type());
  check_same_device("scores", scores, bank);
  TORCH_CHECK(cand.dim() == 3 && cand.sym_size(2) == dim, "membank: cand must be (B, K, D) with D = ", dim,
              " (bank.size(2)); got shape ", cand.sym_sizes());
  TORCH_CHECK(cand.scalar_type() == bank.scalar_type(), "membank: cand has dtype ", cand.scalar_type(),
              " but bank has ", bank.scalar_type());
  check_same_device("cand", cand, bank);
  const c10::SymInt batch = cand.sym_size(0), k = cand.sym_size(1);
  TORCH_CHECK(cand_scores.dim() == 3 && cand_scores.sym_size(0) == batch && cand_scores.sym_size(1) == k &&
                  cand_scores.sym_size(2) == n_class,
              "membank: cand_scores must be (B, K, C) = (", batch, ", ", k, ", ", n_class, "); got shape ",
              cand_scores.sym_sizes());
  TORCH_CHECK(cand_scores.scalar_type() == scores.scalar_type(), "membank: cand_scores has dtype ",
              cand_scores.scalar_type(), " but scores has ", scores.scalar_type());
  check_same_device("cand_scores", cand_scores, bank);
  check_labels(labels, bank, batch);
}

void check_momentum_read_meta(const at::Tensor& bank, const at::Tensor& index) {
  TORCH_CHECK(bank.dim() == 3, "membank: bank must be (V, K, D); got shape ", bank.sym_sizes());
  TORCH_CHECK(at::isFloatingType(bank.scalar_type()), "membank: bank must be floating point; got ",
              bank.scalar_type());
  TORCH_CHECK(index.dim() == 1, "membank: index must be (B,); got shape ", index.sym_sizes());
  TORCH_CHECK(index.scalar_type() == at::kLong, "membank: index must be int64; got ", index.scalar_type());
  check_same_device("index", index, bank);
}

void check_momentum_meta(const at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m) {
  check_momentum_read_meta(bank, index);
  TORCH_CHECK(cand.dim() == 3 && cand.sym_size(0) == index.sym_size(0) && cand.sym_size(1) == bank.sym_size(1) &&
                  cand.sym_size(2) == bank.sym_size(2),
              "membank: cand must be (B, K, D) = (", index.sym_size(0), ", ", bank.sym_size(1), ", ",
              bank.sym_size(2), "); got shape ", cand.sym_sizes());
  TORCH_CHECK(cand.scalar_type() == bank.scalar_type(), "membank: cand has dtype ", cand.scalar_type(),
              " but bank has ", bank.scalar_type());
  check_same_device("cand", cand, bank);
  TORCH_CHECK(std::isfinite(m) && m >= 0.0 && m <= 1.0, "membank: momentum m must be in [0, 1]; got ", m);
}

namespace {
// One host read for all the flags of a call (one sync on CUDA).
std::vector<bool> read_flags(const std::vector<at::Tensor>& flags) {
  auto host = at::stack(flags).to(at::kCPU);
  auto acc = host.accessor<bool, 1>();
  std::vector<bool> out;
  for (const auto i : c10::irange(host.size(0))) out.push_back(acc[i]);
  return out;
}

// On the CPU the flags come from plain loops: ATen's reductions would cost more than the kernels.
bool any_outside(const at::Tensor& t, int64_t lo, int64_t hi) {  // int64 values outside [lo, hi]
  if (!t.is_cpu()) return read_flags({at::logical_or(t < lo, t > hi).any()})[0];
  const auto c = t.contiguous();
  const int64_t* p = c.const_data_ptr<int64_t>();
  return std::any_of(p, p + c.numel(), [&](int64_t v) { return v < lo || v > hi; });
}

bool any_nan(const at::Tensor& t) {
  if (!t.is_cpu()) return read_flags({at::isnan(t).any()})[0];
  bool found = false;
  const auto c = t.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "membank_any_nan", [&] {
    const scalar_t* p = c.const_data_ptr<scalar_t>();
    found = std::any_of(p, p + c.numel(), [](scalar_t v) { return at::_isnan(v); });
  });
  return found;
}
}  // namespace

at::Tensor labels_as_bool(const at::Tensor& labels) {
  if (labels.scalar_type() == at::kBool) return labels.contiguous();
  const bool bad = read_flags({at::logical_and(labels != 0, labels != 1).any()})[0];
  TORCH_CHECK(!bad, "membank: labels must be bool or hold only 0 and 1; got other values (dtype ", labels.scalar_type(), ")");
  return labels.to(at::kBool).contiguous();
}

void check_count_values(const at::Tensor& count, int64_t slots) {
  TORCH_CHECK(!any_outside(count, 0, slots), "membank: count must hold fill counts in [0, S] = [0, ", slots, "]");
}

at::Tensor scores_value_flags(const at::Tensor& scores, const at::Tensor& count, const at::Tensor& cand_scores) {
  const int64_t slots = scores.size(1);
  return at::stack({at::logical_or(count < 0, count > slots).any(), at::isnan(scores).any(), at::isnan(cand_scores).any()})
      .to(at::kLong);
}

void raise_on_scores_flags(const at::Tensor& host_flags, int64_t slots) {
  const auto flags = host_flags.contiguous();
  const int64_t* bad = flags.const_data_ptr<int64_t>();
  TORCH_CHECK(!bad[0], "membank: count must hold fill counts in [0, S] = [0, ", slots, "]");
  TORCH_CHECK(!bad[1], "membank: scores holds NaN");
  TORCH_CHECK(!bad[2], "membank: cand_scores holds NaN");
}

void check_scores_values(const at::Tensor& scores, const at::Tensor& count, const at::Tensor& cand_scores) {
  const int64_t slots = scores.size(1);
  if (!scores.is_cpu()) {  // one sync for the three checks
    raise_on_scores_flags(scores_value_flags(scores, count, cand_scores).to(at::kCPU), slots);
    return;
  }
  check_count_values(count, slots);
  TORCH_CHECK(!any_nan(scores), "membank: scores holds NaN");
  TORCH_CHECK(!any_nan(cand_scores), "membank: cand_scores holds NaN");
}

void check_index_values(const at::Tensor& index, int64_t n_videos) {
  TORCH_CHECK(!any_outside(index, 0, n_videos - 1), "membank: index must hold video rows in [0, V) = [0, ", n_videos,
              ")");
}

// ================================================================================================
// CPU kernels
// ================================================================================================

void write_back(at::Tensor& arg, const at::Tensor& work) {
  if (!arg.is_same(work)) arg.copy_(work);
}

MomentumInputs momentum_inputs(const at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m) {
  check_momentum_meta(bank, index, cand, m);
  check_index_values(index, bank.size(0));
  return {bank.contiguous(), index.contiguous(), cand.contiguous(), index.size(0), bank.size(1) * bank.size(2)};
}

namespace {

// Row `to` <- the row of [bank; cand] that `source` names (gather_insert_walk.h): a bit copy, or
// the row times zero, as the reference writes unfilled slots (it also multiplies kept rows by one:
// the same bits for every value but a NaN, whose payload a multiply may change).
template <typename scalar_t>
void copy_row_source(const scalar_t* bank, int64_t bank_rows, const scalar_t* cand, int64_t source, int64_t dim,
                     scalar_t* to) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row = row_of_source(source);
  const scalar_t* from = row < bank_rows ? bank + row * dim : cand + (row - bank_rows) * dim;
  if (!source_is_zeroed(source)) {
    if (from != to) std::copy(from, from + dim, to);
  } else {
    for (const auto d : c10::irange(dim)) to[d] = static_cast<scalar_t>(static_cast<acc_t>(from[d]) * acc_t(0));
  }
}

// Class c's S slots <- the rows `source` (S entries) names, in place; the sources are the class's
// own slots and candidates. Filled slots sorted by score (the bank's layout) only move down: then,
// last slot first, every row is read before it is overwritten, and a row that stays is not
// copied. Otherwise go through `buffer`.
template <typename scalar_t>
void write_class_slots(scalar_t* bank, int64_t n_class, int64_t slots, int64_t dim, const scalar_t* cand, int64_t c,
                       const int64_t* source, std::vector<scalar_t>& buffer) {
  const int64_t bank_rows = n_class * slots, first = c * slots;
  bool moves_down = true;
  for (const auto r : c10::irange(slots)) {
    const int64_t row = row_of_source(source[r]);
    moves_down = moves_down && (row >= bank_rows || row <= first + r);
  }
  if (moves_down) {
    for (int64_t r = slots - 1; r >= 0; --r) copy_row_source(bank, bank_rows, cand, source[r], dim, bank + (first + r) * dim);
  } else {
    buffer.resize(slots * dim);
    for (const auto r : c10::irange(slots)) copy_row_source(bank, bank_rows, cand, source[r], dim, buffer.data() + r * dim);
    std::copy(buffer.begin(), buffer.end(), bank + first * dim);
  }
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> membank_gather_cpu(const at::Tensor& bank_in, const at::Tensor& count_in,
                                                      const at::Tensor& labels_in) {
  check_gather_meta(bank_in, count_in, labels_in);
  const int64_t n_class = bank_in.size(0), slots = bank_in.size(1), dim = bank_in.size(2);
  check_count_values(count_in, slots);
  const auto bank = bank_in.contiguous();
  const auto count = count_in.contiguous();
  const auto labels = labels_as_bool(labels_in);
  const int64_t batch = labels.size(0);
  const int64_t* cnt = count.data_ptr<int64_t>();
  const bool* lab = labels.data_ptr<bool>();

  auto cu = at::empty({batch + 1}, count.options());
  int64_t* cu_p = cu.data_ptr<int64_t>();
  cu_p[0] = 0;
  for (const auto b : c10::irange(batch)) {
    int64_t rows = 0;
    for (const auto c : c10::irange(n_class)) rows += lab[b * n_class + c] ? cnt[c] : 0;
    cu_p[b + 1] = cu_p[b] + rows;
  }
  auto y = at::empty({cu_p[batch], dim}, bank.options());
  if (cu_p[batch] == 0) return {y, cu};

  // Rows are bit copies: one memcpy per (video, class), the class's filled slots being contiguous.
  const size_t row_bytes = static_cast<size_t>(dim) * bank.element_size();
  const char* src = static_cast<const char*>(bank.const_data_ptr());
  char* dst = static_cast<char*>(y.data_ptr());
  const int64_t avg_rows = std::max<int64_t>(1, cu_p[batch] / std::max<int64_t>(batch, 1));
  at::parallel_for(0, batch, grain_for(avg_rows * dim), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      int64_t out_row = cu_p[b];
      for (const auto c : c10::irange(n_class)) {
        if (!lab[b * n_class + c] || cnt[c] == 0) continue;
        std::memcpy(dst + out_row * row_bytes, src + c * slots * row_bytes, cnt[c] * row_bytes);
        out_row += cnt[c];
      }
    }
  });
  return {y, cu};
}

void membank_insert_topk_cpu(at::Tensor& bank_arg, at::Tensor& scores_arg, at::Tensor& count_arg,
                             const at::Tensor& cand_in, const at::Tensor& cand_scores_in, const at::Tensor& labels_in) {
  check_insert_meta(bank_arg, scores_arg, count_arg, cand_in, cand_scores_in, labels_in);
  check_scores_values(scores_arg, count_arg, cand_scores_in);
  const int64_t n_class = bank_arg.size(0), slots = bank_arg.size(1), dim = bank_arg.size(2);
  const int64_t batch = cand_in.size(0), k = cand_in.size(1);
  const int64_t pool = slots + batch * k;
  if (n_class == 0 || slots == 0) return;

  auto bank = bank_arg.contiguous();
  auto scores = scores_arg.contiguous();
  auto count = count_arg.contiguous();
  const auto cand = cand_in.contiguous();
  const auto cand_scores = cand_scores_in.contiguous();
  const auto labels = labels_as_bool(labels_in);
  const bool* lab = labels.data_ptr<bool>();
  int64_t* cnt = count.data_ptr<int64_t>();

  // Pass 1, per class: rank the pool (filled slots 0..S-1, then candidate b*K+k at S+b*K+k) by
  // (masked score descending, pool position ascending) -- torch.sort(descending, stable) -- keep
  // the first S positions, write the new scores and count. Dead entries (unfilled slots,
  // candidates of videos without the class) score -inf, as in the reference. New slot r's source
  // (gather_insert_walk.h's encoding): its pool entry's row, times zero for r >= count.
  std::vector<int64_t> source(n_class * slots);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "membank_insert_topk_rank", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* sc = scores.data_ptr<scalar_t>();
    const scalar_t* cs = cand_scores.const_data_ptr<scalar_t>();
    at::parallel_for(0, n_class, grain_for(pool), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> key(pool);
      std::vector<int64_t> order(pool);
      for (int64_t c = begin; c < end; ++c) {
        const acc_t dead = -std::numeric_limits<acc_t>::infinity();
        int64_t n_labelled = 0;
        for (const auto s : c10::irange(slots)) key[s] = s < cnt[c] ? static_cast<acc_t>(sc[c * slots + s]) : dead;
        for (const auto b : c10::irange(batch)) {
          const bool live = lab[b * n_class + c];
          n_labelled += live;
          for (const auto j : c10::irange(k))
            key[slots + b * k + j] = live ? static_cast<acc_t>(cs[(b * k + j) * n_class + c]) : dead;
        }
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + slots, order.end(), [&](int64_t i, int64_t j) {
          return key[i] > key[j] || (key[i] == key[j] && i < j);
        });
        const int64_t new_count = std::min(cnt[c] + n_labelled * k, slots);
        for (const auto r : c10::irange(slots)) {
          const int64_t row = order[r] < slots ? c * slots + order[r] : n_class * slots + order[r] - slots;
          source[c * slots + r] = encode_source(row, r >= new_count);
          sc[c * slots + r] = r < new_count ? static_cast<scalar_t>(key[order[r]]) : static_cast<scalar_t>(0);
        }
        cnt[c] = new_count;
      }
    });
  });

  // Pass 2, per class: the new slots from their sources.
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_insert_topk_rows", [&] {
    scalar_t* bk = bank.data_ptr<scalar_t>();
    const scalar_t* cd = cand.const_data_ptr<scalar_t>();
    at::parallel_for(0, n_class, grain_for(slots * dim), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buffer;
      for (int64_t c = begin; c < end; ++c) write_class_slots(bk, n_class, slots, dim, cd, c, source.data() + c * slots, buffer);
    });
  });
  write_back(bank_arg, bank);
  write_back(scores_arg, scores);
  write_back(count_arg, count);
}

std::tuple<at::Tensor, at::Tensor> gather_insert_layout(const at::Tensor& count, const at::Tensor& labels, int64_t slots,
                                                        int64_t k) {
  if (count.is_cpu()) {  // a plain loop: ATen's small ops would cost more than the kernel
    const int64_t batch = labels.size(0), n_class = labels.size(1);
    auto row_offset = at::empty({batch, n_class}, count.options()), cu = at::empty({batch + 1}, count.options());
    const bool* lab = labels.const_data_ptr<bool>();
    int64_t *offset = row_offset.data_ptr<int64_t>(), *cu_p = cu.data_ptr<int64_t>();
    const int64_t* cnt = count.const_data_ptr<int64_t>();
    std::vector<int64_t> filled(cnt, cnt + n_class);  // each class's fill count after the videos so far
    cu_p[0] = 0;
    for (const auto b : c10::irange(batch)) {
      int64_t row = cu_p[b];
      for (const auto c : c10::irange(n_class)) {
        offset[b * n_class + c] = row;
        if (!lab[b * n_class + c]) continue;
        row += filled[c];
        filled[c] = std::min(filled[c] + k, slots);
      }
      cu_p[b + 1] = row;
    }
    return {row_offset, cu};
  }
  const auto has = labels.to(at::kLong);                   // (B, C)
  const auto earlier = has.cumsum(0) - has;                // videos before b with class c
  const auto rows = has * at::clamp_max(count.unsqueeze(0) + k * earlier, slots);  // integers: exact
  const auto row_offset = rows.flatten().cumsum(0).view_as(rows) - rows;  // row-major: video, then class
  const auto cu = at::cat({at::zeros({1}, count.options()), rows.sum(1).cumsum(0)});
  return {row_offset.contiguous(), cu};
}

std::tuple<at::Tensor, at::Tensor> membank_gather_insert_cpu(at::Tensor& bank_arg, at::Tensor& scores_arg,
                                                             at::Tensor& count_arg, const at::Tensor& cand_in,
                                                             const at::Tensor& cand_scores_in,
                                                             const at::Tensor& labels_in) {
  check_insert_meta(bank_arg, scores_arg, count_arg, cand_in, cand_scores_in, labels_in);
  check_scores_values(scores_arg, count_arg, cand_scores_in);
  const int64_t n_class = bank_arg.size(0), slots = bank_arg.size(1), dim = bank_arg.size(2);
  const int64_t batch = cand_in.size(0), k = cand_in.size(1);
  const auto labels = labels_as_bool(labels_in);
  auto count = count_arg.contiguous();
  at::Tensor row_offset, cu;
  std::tie(row_offset, cu) = gather_insert_layout(count, labels, slots, k);
  const int64_t* cu_p = cu.const_data_ptr<int64_t>();
  auto y = at::empty({cu_p[batch], dim}, bank_arg.options());
  if (batch == 0 || n_class == 0 || slots == 0) return {y, cu};  // nothing to read, nothing moves

  auto bank = bank_arg.contiguous();
  auto scores = scores_arg.contiguous();
  const auto cand = cand_in.contiguous();
  const auto cand_scores = cand_scores_in.contiguous();
  std::vector<int64_t> y_source(cu_p[batch]), bank_source(n_class * slots);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "membank_gather_insert_walk", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const GatherInsertWalk<scalar_t> walk{row_offset.const_data_ptr<int64_t>(), cand_scores.const_data_ptr<scalar_t>(),
                                          labels.const_data_ptr<bool>(), n_class, slots, batch, k,
                                          scores.data_ptr<scalar_t>(), count.data_ptr<int64_t>(), y_source.data(),
                                          bank_source.data()};
    at::parallel_for(0, n_class, grain_for(batch * (slots + k)), [&](int64_t begin, int64_t end) {
      std::vector<WalkEntry<acc_t>> pool(slots + k);
      for (int64_t c = begin; c < end; ++c) walk_class_in_video_order(walk, c, pool.data());
    });
  });
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_gather_insert_rows", [&] {
    scalar_t* bk = bank.data_ptr<scalar_t>();
    const scalar_t* cd = cand.const_data_ptr<scalar_t>();
    scalar_t* dst = y.data_ptr<scalar_t>();
    const int64_t bank_rows = n_class * slots;
    // y first: it reads the bank as it was.
    at::parallel_for(0, y.size(0), grain_for(dim), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) copy_row_source(bk, bank_rows, cd, y_source[i], dim, dst + i * dim);
    });
    // Then each class's new slots.
    at::parallel_for(0, n_class, grain_for(slots * dim), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buffer;
      for (int64_t c = begin; c < end; ++c)
        write_class_slots(bk, n_class, slots, dim, cd, c, bank_source.data() + c * slots, buffer);
    });
  });
  write_back(bank_arg, bank);
  write_back(scores_arg, scores);
  write_back(count_arg, count);
  return {y, cu};
}

void membank_momentum_cpu(at::Tensor& bank_arg, const at::Tensor& index_in, const at::Tensor& cand_in, double m) {
  MomentumInputs in = momentum_inputs(bank_arg, index_in, cand_in, m);
  if (in.batch == 0 || in.row == 0) return;
  at::Tensor& bank = in.bank;
  const at::Tensor &index = in.index, &cand = in.cand;
  const int64_t batch = in.batch, row = in.row;
  const int64_t* idx = index.const_data_ptr<int64_t>();

  // The reference computes m * slot, (1 - m) * cand and their sum as three eager ops, each
  // rounded to the bank dtype, the scalars taken in the op math type: so do we (the build turns
  // off FMA contraction). Positions are independent; the videos run in batch order.
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bank.scalar_type(), "membank_momentum", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t w_old = static_cast<acc_t>(m);
    const acc_t w_new = static_cast<acc_t>(1.0 - m);
    scalar_t* bk = bank.data_ptr<scalar_t>();
    const scalar_t* cd = cand.const_data_ptr<scalar_t>();
    at::parallel_for(0, row, at::internal::GRAIN_SIZE / std::max<int64_t>(batch, 1) + 1, [&](int64_t begin, int64_t end) {
      for (const auto b : c10::irange(batch)) {
        scalar_t* slot = bk + idx[b] * row;
        const scalar_t* new_row = cd + b * row;
        for (int64_t j = begin; j < end; ++j) {
          const scalar_t kept = static_cast<scalar_t>(static_cast<acc_t>(slot[j]) * w_old);
          const scalar_t added = static_cast<scalar_t>(static_cast<acc_t>(new_row[j]) * w_new);
          slot[j] = static_cast<scalar_t>(static_cast<acc_t>(kept) + static_cast<acc_t>(added));
        }
      }
    });
  });
  write_back(bank_arg, bank);
}

at::Tensor membank_momentum_read_cpu(const at::Tensor& bank_in, const at::Tensor& index_in) {
  check_momentum_read_meta(bank_in, index_in);
  check_index_values(index_in, bank_in.size(0));
  const auto bank = bank_in.contiguous();
  const auto index = index_in.contiguous();
  const int64_t batch = index.size(0);
  auto out = at::empty({batch, bank.size(1), bank.size(2)}, bank.options());
  const size_t row_bytes = static_cast<size_t>(bank.size(1) * bank.size(2)) * bank.element_size();
  if (batch == 0 || row_bytes == 0) return out;
  const int64_t* idx = index.const_data_ptr<int64_t>();
  const char* src = static_cast<const char*>(bank.const_data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, batch, grain_for(bank.size(1) * bank.size(2)), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) std::memcpy(dst + b * row_bytes, src + idx[b] * row_bytes, row_bytes);
  });
  return out;
}

// ================================================================================================
// Meta kernels: the metadata checks and the outputs' metadata, no data. FakeTensorMode and
// torch.compile run these, so a traced call fails with the messages of an eager one.
// ================================================================================================

namespace {
void membank_insert_topk_meta(at::Tensor& bank, at::Tensor& scores, at::Tensor& count, const at::Tensor& cand,
                              const at::Tensor& cand_scores, const at::Tensor& labels) {
  check_insert_meta(bank, scores, count, cand, cand_scores, labels);
}

void membank_momentum_meta(at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m) {
  check_momentum_meta(bank, index, cand, m);
}

at::Tensor membank_momentum_read_meta(const at::Tensor& bank, const at::Tensor& index) {
  check_momentum_read_meta(bank, index);
  return at::empty_symint({index.sym_size(0), bank.sym_size(1), bank.sym_size(2)}, bank.options());
}
}  // namespace

}  // namespace rs_kernels

// ================================================================================================
// Registration: schema first; CPU and Meta kernels here, CUDA kernels in cuda/membank_cuda.cu.
// ================================================================================================

TORCH_LIBRARY(rs_kernels, m) {
  // The output row counts of membank_gather and membank_gather_insert_ depend on the data, which
  // only a Python fake kernel can express (an unbacked size): rs_kernels.membank.load_extension
  // registers those when it loads this library, and they make their checks by calling
  // membank_gather_check and membank_gather_insert_check. The other ops have Meta kernels here.
  m.set_python_module("rs_kernels.membank");
  // membank_gather returns its offsets on the host (CPU) whatever the bank's device: it must read
  // them to size its output, and the caller needs them there (rs_kernels.membank moves a copy).
  m.def("membank_gather(Tensor bank, Tensor count, Tensor labels) -> (Tensor, Tensor)");
  m.def("membank_gather_check(Tensor bank, Tensor count, Tensor labels) -> ()");
  m.def(
      "membank_insert_topk_(Tensor(a!) bank, Tensor(b!) scores, Tensor(c!) count, Tensor cand, Tensor cand_scores, "
      "Tensor labels) -> ()");
  // membank_gather_insert_: each video reads the bank as the inserts of the videos before it left
  // it, then inserts its candidates; its offsets come back on the host, as membank_gather's.
  m.def(
      "membank_gather_insert_(Tensor(a!) bank, Tensor(b!) scores, Tensor(c!) count, Tensor cand, "
      "Tensor cand_scores, Tensor labels) -> (Tensor, Tensor)");
  m.def(
      "membank_gather_insert_check(Tensor bank, Tensor scores, Tensor count, Tensor cand, Tensor cand_scores, "
      "Tensor labels) -> ()");
  m.def("membank_momentum_(Tensor(a!) bank, Tensor index, Tensor cand, float m) -> ()");
  m.def("membank_momentum_read(Tensor bank, Tensor index) -> Tensor");
}

TORCH_LIBRARY_IMPL(rs_kernels, CPU, m) {
  m.impl("membank_gather", &rs_kernels::membank_gather_cpu);
  m.impl("membank_insert_topk_", &rs_kernels::membank_insert_topk_cpu);
  m.impl("membank_gather_insert_", &rs_kernels::membank_gather_insert_cpu);
  m.impl("membank_momentum_", &rs_kernels::membank_momentum_cpu);
  m.impl("membank_momentum_read", &rs_kernels::membank_momentum_read_cpu);
}

TORCH_LIBRARY_IMPL(rs_kernels, Meta, m) {
  m.impl("membank_insert_topk_", &rs_kernels::membank_insert_topk_meta);
  m.impl("membank_momentum_", &rs_kernels::membank_momentum_meta);
  m.impl("membank_momentum_read", &rs_kernels::membank_momentum_read_meta);
}

// Metadata only, so one kernel serves every device, meta and fake tensors included.
TORCH_LIBRARY_IMPL(rs_kernels, CompositeExplicitAutograd, m) {
  m.impl("membank_gather_check", &rs_kernels::check_gather_meta);
  m.impl("membank_gather_insert_check", &rs_kernels::check_insert_meta);
}

// The bank is state, not a function of parameters: no gradient flows through these ops. The
// fallback makes that explicit (a backward through them raises) and keeps version counters right.
TORCH_LIBRARY_IMPL(rs_kernels, Autograd, m) {
  m.impl("membank_gather", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_gather_check", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_insert_topk_", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_gather_insert_", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_gather_insert_check", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_momentum_", torch::autograd::autogradNotImplementedFallback());
  m.impl("membank_momentum_read", torch::autograd::autogradNotImplementedFallback());
}
