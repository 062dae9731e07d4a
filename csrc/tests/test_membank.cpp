// C++ test of the memory-bank CPU ops, built by CMakeLists.txt against libtorch and run by ctest.
//
// Calls the ops through the dispatcher (torch.ops.rs_kernels.* as Python sees them) and compares
// them bit for bit with a libtorch transcription of the spec, rs_kernels/reference.py, over long
// random sequences of inserts (tied scores, +-inf, K > S, classes no video has, empty batches),
// reads, reads and inserts in video order, and momentum updates; then checks that bad arguments
// raise errors naming them, in the CPU kernels and in the Meta kernels alike.
#include "../membank.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

namespace {

int failures = 0;

#define EXPECT(cond, what)                                                              \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      ++failures;                                                                       \
      std::cerr << "FAILED " << __FILE__ << ":" << __LINE__ << ": " << what << "\n"; \
    }                                                                                   \
  } while (0)

// ---- the spec, transcribed from rs_kernels/reference.py --------------------------------------------

std::tuple<at::Tensor, at::Tensor> ref_gather(const at::Tensor& bank, const at::Tensor& count, const at::Tensor& labels) {
  const int64_t slots = bank.size(1);
  const auto filled = at::arange(slots, count.options()).unsqueeze(0) < count.unsqueeze(1);
  const auto take = labels.to(at::kBool).unsqueeze(2).logical_and(filled.unsqueeze(0));
  const auto nz = take.nonzero();
  const auto y = bank.index({nz.select(1, 1), nz.select(1, 2)});
  const auto per_video = take.flatten(1).sum(1);
  return {y, at::cat({at::zeros({1}, per_video.options()), per_video.cumsum(0)})};
}

void ref_insert(at::Tensor& bank, at::Tensor& scores, at::Tensor& count, const at::Tensor& cand,
                const at::Tensor& cand_scores, const at::Tensor& labels) {
  const int64_t n_class = bank.size(0), slots = bank.size(1), dim = bank.size(2);
  const int64_t batch = cand.size(0), k = cand.size(1);
  const auto range = at::arange(slots, count.options());
  const auto slot_live = range.unsqueeze(0) < count.unsqueeze(1);
  const auto cand_live = labels.to(at::kBool).t().unsqueeze(2).expand({n_class, batch, k}).reshape({n_class, batch * k});
  const auto live = at::cat({slot_live, cand_live}, 1);
  const auto pool_scores =
      at::cat({scores, cand_scores.permute({2, 0, 1}).reshape({n_class, batch * k}).to(scores.scalar_type())}, 1);
  const auto ranked = pool_scores.masked_fill(live.logical_not(), -std::numeric_limits<double>::infinity())
                          .sort(/*stable=*/true, /*dim=*/1, /*descending=*/true);
  const auto values = std::get<0>(ranked), order = std::get<1>(ranked).slice(1, 0, slots);
  const auto class_base = at::arange(n_class, count.options()).unsqueeze(1) * slots;
  const auto source_row = at::where(order < slots, class_base + order, n_class * slots + order - slots);
  const auto rows = at::cat({bank.reshape({n_class * slots, dim}), cand.reshape({batch * k, dim}).to(bank.scalar_type())});
  const auto new_count = at::clamp_max(count + cand_live.sum(1), slots);
  const auto keep = range.unsqueeze(0) < new_count.unsqueeze(1);
  bank.copy_(rows.index({source_row}) * keep.unsqueeze(2));
  scores.copy_(at::where(keep, values.slice(1, 0, slots), at::zeros_like(scores)));
  count.copy_(new_count);
}

// The loop membank_gather_insert_ stands for: each video gathers, then inserts, in batch order.
std::tuple<at::Tensor, at::Tensor> ref_gather_insert(at::Tensor& bank, at::Tensor& scores, at::Tensor& count,
                                                     const at::Tensor& cand, const at::Tensor& cand_scores,
                                                     const at::Tensor& labels) {
  std::vector<at::Tensor> reads{bank.new_empty({0, bank.size(2)})}, per_video{at::zeros({1}, count.options())};
  for (int64_t b = 0; b < labels.size(0); ++b) {
    const auto [y, cu] = ref_gather(bank, count, labels.slice(0, b, b + 1));
    reads.push_back(y);
    per_video.push_back(cu.slice(0, 1));
    ref_insert(bank, scores, count, cand.slice(0, b, b + 1), cand_scores.slice(0, b, b + 1), labels.slice(0, b, b + 1));
  }
  return {at::cat(reads), at::cat(per_video).cumsum(0)};
}

void ref_momentum(at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m) {
  for (int64_t b = 0; b < index.numel(); ++b) {
    const int64_t v = index[b].item<int64_t>();
    bank[v] = m * bank[v] + (1 - m) * cand[b].to(bank.scalar_type());
  }
}

// ---- the ops, through the dispatcher -------------------------------------------------------------

c10::OperatorHandle op(const char* name) { return c10::Dispatcher::singleton().findSchemaOrThrow(name, ""); }

std::tuple<at::Tensor, at::Tensor> gather(const at::Tensor& bank, const at::Tensor& count, const at::Tensor& labels) {
  static auto h = op("rs_kernels::membank_gather")
                      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return h.call(bank, count, labels);
}

void insert(at::Tensor& bank, at::Tensor& scores, at::Tensor& count, const at::Tensor& cand, const at::Tensor& cand_scores,
            const at::Tensor& labels) {
  static auto h = op("rs_kernels::membank_insert_topk_")
                      .typed<void(at::Tensor&, at::Tensor&, at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&)>();
  h.call(bank, scores, count, cand, cand_scores, labels);
}

std::tuple<at::Tensor, at::Tensor> gather_insert(at::Tensor& bank, at::Tensor& scores, at::Tensor& count,
                                                 const at::Tensor& cand, const at::Tensor& cand_scores,
                                                 const at::Tensor& labels) {
  static auto h = op("rs_kernels::membank_gather_insert_")
                      .typed<std::tuple<at::Tensor, at::Tensor>(at::Tensor&, at::Tensor&, at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, const at::Tensor&)>();
  return h.call(bank, scores, count, cand, cand_scores, labels);
}

void momentum(at::Tensor& bank, const at::Tensor& index, const at::Tensor& cand, double m) {
  static auto h = op("rs_kernels::membank_momentum_").typed<void(at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  h.call(bank, index, cand, m);
}

at::Tensor momentum_read(const at::Tensor& bank, const at::Tensor& index) {
  static auto h = op("rs_kernels::membank_momentum_read").typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return h.call(bank, index);
}

// ---- helpers -------------------------------------------------------------------------------------

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  auto as_bits = [](const at::Tensor& t) {
    switch (t.scalar_type()) {
      case at::kDouble: return t.contiguous().view(at::kLong);
      case at::kFloat: return t.contiguous().view(at::kInt);
      case at::kHalf:
      case at::kBFloat16: return t.contiguous().view(at::kShort);
      default: return t.contiguous();
    }
  };
  return at::equal(as_bits(a), as_bits(b));
}

at::Tensor random_scores(at::IntArrayRef shape, at::ScalarType dtype) {
  auto s = at::randint(0, 6, shape, at::kDouble) / 5;  // a coarse grid: many ties
  const auto u = at::rand(shape, at::kDouble);
  s = at::where(u < 0.04, at::full_like(s, -0.0), s);
  s = at::where((u >= 0.04) & (u < 0.06), at::full_like(s, std::numeric_limits<double>::infinity()), s);
  s = at::where((u >= 0.06) & (u < 0.08), at::full_like(s, -std::numeric_limits<double>::infinity()), s);
  return s.to(dtype);
}

at::Tensor random_labels(int64_t batch, int64_t n_class) {
  auto labels = at::rand({batch, n_class}) < 0.35;
  if (n_class > 0) labels.select(1, n_class - 1).fill_(false);  // a class no video has
  return labels;
}

int64_t pick(std::initializer_list<int64_t> choices) {
  const int64_t i = at::randint(0, static_cast<int64_t>(choices.size()), {1}, at::kLong).item<int64_t>();
  return *(choices.begin() + i);
}

bool throws_with(const std::function<void()>& f, const std::string& message) {
  try {
    f();
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find(message) != std::string::npos) return true;
    std::cerr << "  wrong message: " << e.what_without_backtrace() << "\n";
    return false;
  }
  return false;
}

// ---- tests ---------------------------------------------------------------------------------------

void test_class_bank_sequence(at::ScalarType dtype, at::ScalarType sdtype, int64_t steps) {
  const int64_t n_class = 6, slots = 4, dim = 5;
  auto bank = at::zeros({n_class, slots, dim}, dtype), scores = at::zeros({n_class, slots}, sdtype);
  auto count = at::zeros({n_class}, at::kLong);
  auto rbank = bank.clone(), rscores = scores.clone(), rcount = count.clone();
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t batch = step % 37 == 5 ? 40 : pick({0, 1, 3, 9});
    const int64_t k = pick({1, slots, slots + 3});
    const auto cand = at::randn({batch, k, dim}).to(dtype);
    const auto cand_scores = random_scores({batch, k, n_class}, sdtype);
    const auto labels = random_labels(batch, n_class);
    insert(bank, scores, count, cand, cand_scores, labels);
    ref_insert(rbank, rscores, rcount, cand, cand_scores, labels);
    EXPECT(same_bits(bank, rbank), "insert bank, step " << step << " dtype " << dtype);
    EXPECT(same_bits(scores, rscores), "insert scores, step " << step << " dtype " << sdtype);
    EXPECT(same_bits(count, rcount), "insert count, step " << step);
    const auto read_labels = random_labels(pick({0, 1, 4}), n_class);
    const auto [y, cu] = gather(bank, count, read_labels);
    const auto [ry, rcu] = ref_gather(rbank, rcount, read_labels);
    EXPECT(same_bits(y, ry) && same_bits(cu, rcu), "gather, step " << step);
    const auto [dy, dcu] = rs_kernels::membank_gather_cpu(bank, count, read_labels);  // the kernel, directly
    EXPECT(same_bits(dy, ry) && same_bits(dcu, rcu), "gather (direct call), step " << step);
  }
}

// Each step: the op against the loop on a copy, and its final bank against one batched insert.
void test_gather_insert_sequence(at::ScalarType dtype, at::ScalarType sdtype, int64_t steps) {
  const int64_t n_class = 6, slots = 4, dim = 5;
  auto bank = at::zeros({n_class, slots, dim}, dtype), scores = at::zeros({n_class, slots}, sdtype);
  auto count = at::zeros({n_class}, at::kLong);
  for (int64_t step = 0; step < steps; ++step) {
    if (step % 29 == 0) bank.zero_(), scores.zero_(), count.zero_();  // classes fill up anew
    const int64_t batch = pick({0, 1, 3, 9}), k = pick({1, slots, slots + 3});
    const auto cand = at::randn({batch, k, dim}).to(dtype);
    const auto cand_scores = random_scores({batch, k, n_class}, sdtype);
    const auto labels = random_labels(batch, n_class);
    auto lbank = bank.clone(), lscores = scores.clone(), lcount = count.clone();
    auto bbank = bank.clone(), bscores = scores.clone(), bcount = count.clone();
    const auto [y, cu] = gather_insert(bank, scores, count, cand, cand_scores, labels);
    const auto [ry, rcu] = ref_gather_insert(lbank, lscores, lcount, cand, cand_scores, labels);
    ref_insert(bbank, bscores, bcount, cand, cand_scores, labels);
    EXPECT(same_bits(y, ry) && same_bits(cu, rcu), "gather_insert reads, step " << step << " dtype " << dtype);
    EXPECT(same_bits(bank, lbank) && same_bits(scores, lscores) && same_bits(count, lcount),
           "gather_insert bank against the loop, step " << step);
    EXPECT(same_bits(bank, bbank) && same_bits(scores, bscores) && same_bits(count, bcount),
           "gather_insert bank against one batched insert, step " << step);
  }
}

void test_momentum_sequence(at::ScalarType dtype, int64_t steps) {
  auto bank = at::randn({7, 3, 11}).to(dtype);
  auto rbank = bank.clone();
  const double ms[] = {0.0, 1.0, 0.5, 0.9, 0.999};
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t batch = pick({0, 1, 4, 10});
    const auto index = at::randint(0, 7, {batch}, at::kLong);
    const auto cand = at::randn({batch, 3, 11}).to(dtype);
    momentum(bank, index, cand, ms[step % 5]);
    ref_momentum(rbank, index, cand, ms[step % 5]);
    EXPECT(same_bits(bank, rbank), "momentum, step " << step << " dtype " << dtype);
    const auto read = at::randint(0, 7, {pick({0, 3})}, at::kLong);
    EXPECT(same_bits(momentum_read(bank, read), rbank.index_select(0, read)), "momentum read, step " << step);
  }
}

void test_errors() {
  auto bank = at::zeros({3, 2, 4}), scores = at::zeros({3, 2});
  auto count = at::zeros({3}, at::kLong);
  const auto cand = at::zeros({2, 5, 4}), cand_scores = at::zeros({2, 5, 3});
  const auto labels = at::ones({2, 3}, at::kBool);
  EXPECT(throws_with([&] { insert(bank, scores, count, cand, at::full({2, 5, 3}, NAN), labels); },
                     "cand_scores holds NaN"), "NaN candidate scores");
  EXPECT(throws_with([&] { insert(bank, scores, count, cand, cand_scores, at::full({2, 3}, 2)); },
                     "labels must be bool or hold only 0 and 1"), "labels of 2");
  EXPECT(throws_with([&] { insert(bank, scores, count, cand, cand_scores.to(at::kDouble), labels); },
                     "cand_scores has dtype Double but scores has Float"), "dtype mismatch");
  EXPECT(throws_with([&] { insert(bank, scores, count, at::zeros({2, 5, 3}), cand_scores, labels); },
                     "cand must be (B, K, D) with D = 4"), "wrong D");
  EXPECT(throws_with([&] { gather_insert(bank, scores, count, cand, cand_scores, labels.slice(0, 0, 1)); },
                     "labels must be (B, C) with B = 2"), "gather_insert: labels of another batch");
  auto negative_count = at::full({3}, -1, at::kLong);
  EXPECT(throws_with([&] { gather_insert(bank, scores, negative_count, cand, cand_scores, labels); },
                     "count must hold fill counts in [0, S]"), "gather_insert: negative count");
  EXPECT(throws_with([&] { gather(bank, at::zeros({2}, at::kLong), labels); }, "count must be (C,) with C = 3"),
         "wrong C");
  EXPECT(throws_with([&] { gather(bank, at::full({3}, 3, at::kLong), labels); }, "count must hold fill counts in [0, S]"),
         "count over S");
  auto vbank = at::zeros({4, 2, 3});
  EXPECT(throws_with([&] { momentum(vbank, at::tensor({4}, at::kLong), at::zeros({1, 2, 3}), 0.5); },
                     "index must hold video rows in [0, V) = [0, 4)"), "index out of range");
  EXPECT(throws_with([&] { momentum(vbank, at::tensor({0}, at::kLong), at::zeros({1, 2, 3}), 1.5); },
                     "momentum m must be in [0, 1]"), "m out of range");
  // Empty batches are fine.
  insert(bank, scores, count, cand.slice(0, 0, 0), cand_scores.slice(0, 0, 0), labels.slice(0, 0, 0));
  const auto [y, cu] = gather(bank, count, labels.slice(0, 0, 0));
  EXPECT(y.size(0) == 0 && cu.numel() == 1 && cu.item<int64_t>() == 0, "empty gather");
}

// The Meta kernels (what FakeTensorMode runs) make the same metadata checks on tensors without data.
void test_meta_kernels() {
  const auto meta = [](at::IntArrayRef shape, at::ScalarType dtype = at::kFloat) {
    return at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kMeta));
  };
  auto bank = meta({3, 2, 4}), scores = meta({3, 2}), count = meta({3}, at::kLong);
  const auto cand = meta({2, 5, 4}), cand_scores = meta({2, 5, 3}), labels = meta({2, 3}, at::kBool);
  insert(bank, scores, count, cand, cand_scores, labels);
  EXPECT(throws_with([&] { insert(bank, scores, count, cand, meta({2, 5, 3}, at::kDouble), labels); },
                     "cand_scores has dtype Double but scores has Float"), "meta: dtype mismatch");
  EXPECT(throws_with([&] { insert(bank, scores, count, cand, cand_scores, meta({1, 3}, at::kBool)); },
                     "labels must be (B, C) with B = 2"), "meta: labels of another batch");
  auto vbank = meta({4, 2, 3});
  momentum(vbank, meta({5}, at::kLong), meta({5, 2, 3}), 0.5);
  EXPECT(throws_with([&] { momentum(vbank, meta({5}, at::kLong), meta({5, 2, 3}), -0.5); },
                     "momentum m must be in [0, 1]"), "meta: m out of range");
  const auto read = momentum_read(vbank, meta({7}, at::kLong));
  EXPECT(read.is_meta() && read.sizes() == at::IntArrayRef({7, 2, 3}), "meta: momentum read shape");
  EXPECT(throws_with([&] { momentum_read(vbank, meta({7}, at::kInt)); }, "index must be int64; got Int"),
         "meta: int32 index");
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_class_bank_sequence(at::kFloat, at::kFloat, 300);
  test_class_bank_sequence(at::kDouble, at::kDouble, 150);
  test_class_bank_sequence(at::kHalf, at::kFloat, 150);
  test_gather_insert_sequence(at::kFloat, at::kFloat, 150);
  test_gather_insert_sequence(at::kBFloat16, at::kHalf, 100);
  test_momentum_sequence(at::kFloat, 200);
  test_momentum_sequence(at::kBFloat16, 100);
  test_errors();
  test_meta_kernels();
  if (failures) {
    std::cerr << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "test_membank: all checks passed\n";
  return 0;
}
